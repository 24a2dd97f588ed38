"""The MARS region map's boundary between lobar (juxtacortical) and deep white matter, point by point in MNI space."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from CMBDetectionLib.mars.atlas import aal_labels_matching, load_mni_atlas
from CMBDetectionLib.mars.rating import MarsRater
from CMBDetectionLib.mars.regions import JUXTACORTICAL_MM

NOT_CORTEX = ("Caudate", "Putamen", "Pallidum", "Thalamus", "Cerebelum", "Vermis")  # every other AAL label is a lobe's


def _white_matter_by_distance() -> tuple[np.ndarray, np.ndarray]:
    """RAS points (mm) of unlabelled white matter in the centrum semiovale (z 30-50 mm, 15-40 mm off the midline,
    where no deep nucleus, capsule or callosum lies) and their distance (mm) to the nearest lobe's cortex."""
    atlas = load_mni_atlas()
    aal = atlas.array("aal")
    cortex = (aal > 0) & ~np.isin(aal, aal_labels_matching(atlas, *NOT_CORTEX))
    distance = ndimage.distance_transform_edt(~cortex)  # 1 mm template grid: voxels are mm
    index = np.argwhere((aal == 0) & (atlas.array("wm") > 0.9))[:, ::-1]  # (i, j, k)
    lps = np.array([atlas.t1.TransformIndexToPhysicalPoint(tuple(int(v) for v in p)) for p in index[::50]])
    ras = lps * [-1, -1, 1]
    keep = (ras[:, 2] >= 30) & (ras[:, 2] <= 50) & (np.abs(ras[:, 0]) >= 15) & (np.abs(ras[:, 0]) <= 40)
    kept = index[::50][keep]
    return ras[keep], distance[kept[:, 2], kept[:, 1], kept[:, 0]]


@pytest.mark.parametrize("low, high, category", [(1.0, JUXTACORTICAL_MM - 1.0, "lobar"),
                                                 (JUXTACORTICAL_MM + 1.0, 12.0, "deep")])
def test_white_matter_is_lobar_within_4_mm_of_the_cortex_and_deep_beyond(low, high, category) -> None:
    ras, distance = _white_matter_by_distance()
    points = ras[(distance >= low) & (distance <= high)]
    assert len(points) >= 10
    rater = MarsRater(registration=None)  # points already in MNI space
    located = [rater.locate(tuple(p)) for p in points]
    assert {c for _, c, _ in located} == {category}
    if category == "deep":
        assert {r for r, _, _ in located} == {"deep_white_matter"}
