"""MARS rating (Microbleed Anatomical Rating Scale, Gregoire et al., Neurology 2009) of detected lesions.

Each lesion gets a region, its category (lobar, deep, infratentorial), a side and a certainty:

- **Region**: the subject is registered to MNI152 (:mod:`registration`) and looked up in the MARS region
  map (:mod:`mars_regions`, which documents how each region is defined). Deep and periventricular white
  matter are one region, ``deep_white_matter``, as in the MARS form.
- **Boundary rule** (each lesion counted once): the region at the lesion's centre of mass; when that
  point is unlabelled (more than 10 mm outside the template brain), the most frequent region among the
  lesion's voxels; when none is labelled, region ``outside_brain``, category ``unclassified``.
- **Side**: the sign of the MNI x coordinate of the centre (x >= 0 is right; the template is symmetric).
- **Certainty**: ``definite`` when all of the following hold, else ``possible`` (MARS's "fails one of these"):
  diameter <= :data:`MAX_DEFINITE_DIAMETER_MM` (small); elongation (square root of the ratio of the two
  largest principal moments of its voxels, so a vessel segment scores high) <= :data:`MAX_DEFINITE_ELONGATION`
  (round or ovoid, not a vessel), judged only with a label map and at least 4 voxels; mean probability >=
  :data:`MIN_DEFINITE_PROBABILITY` (confident); inside the brain. It is an ordinary field: edit it freely.

The count table is computed from the lesion list alone (:func:`count_table`), so a front end can recompute
it after every correction; ``outputs.mars_table`` writes it as ``S_mars.csv``.

>>> rater = MarsRater.from_image(swi)                           # doctest: +SKIP
>>> rater.annotate(result.lesions, result.label_map)            # doctest: +SKIP
>>> count_table(result.lesions)[-1]["total"]                    # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.imageio.volumes import index_to_ras, lps_to_ras, ras_to_lps
from CMBDetectionLib.mars.regions import MARS_CATEGORIES, MARS_REGIONS, REGION_NAMES, SIDES, load_region_map
from CMBDetectionLib.mars.registration import MniRegistration, register_to_mni
from CMBDetectionLib.results import Lesion

__all__ = [
    "MARS_CATEGORIES", "MARS_REGIONS", "SIDES", "CERTAINTIES", "OUTSIDE_REGION", "UNCLASSIFIED",
    "MarsRater", "count_table",
]

CERTAINTIES = ("definite", "possible")
OUTSIDE_REGION = "outside_brain"
UNCLASSIFIED = "unclassified"
ALL = "all"
BOTH = "both"
TABLE_COLUMNS = ("category", "region", "side", "definite", "possible", "total")

MAX_DEFINITE_DIAMETER_MM = 10.0
MAX_DEFINITE_ELONGATION = 2.0
MIN_DEFINITE_PROBABILITY = 0.6
_MIN_VOXELS_FOR_SHAPE = 4


@lru_cache(maxsize=1)
def _region_map() -> tuple[sitk.Image, np.ndarray]:
    image = load_region_map()
    return image, sitk.GetArrayFromImage(image)


def _category(region: str) -> str:
    if region == OUTSIDE_REGION:
        return UNCLASSIFIED
    if region not in MARS_REGIONS:
        raise ValueError(f"unknown MARS region {region!r}; use one of {', '.join(MARS_REGIONS)} or {OUTSIDE_REGION}.")
    return MARS_REGIONS[region]


@dataclass
class MarsRater:
    """Locates points and lesions of one subject in MARS regions.

    ``registration`` maps the subject to MNI space (None: the subject already is in MNI space);
    ``reference`` is the subject image whose grid label maps passed to :meth:`annotate` share.
    """

    registration: MniRegistration | None
    reference: sitk.Image | None = None

    @classmethod
    def from_image(cls, image: sitk.Image) -> MarsRater:
        """Register ``image`` to MNI (raises :class:`registration.RegistrationError` when that fails)."""
        return cls(register_to_mni(image), image)

    def _to_mni(self, ras: np.ndarray) -> np.ndarray:
        """Subject RAS points (n, 3) to MNI RAS."""
        if self.registration is None:
            return ras
        transform = self.registration.transform
        return lps_to_ras(np.array([transform.TransformPoint(p) for p in ras_to_lps(ras).tolist()]))

    def _codes(self, ras: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Region codes (0 = unlabelled) and MNI x at subject RAS points (n, 3)."""
        image, codes = _region_map()
        mni = self._to_mni(np.atleast_2d(np.asarray(ras, dtype=float)))
        index = np.rint([image.TransformPhysicalPointToContinuousIndex(p) for p in ras_to_lps(mni).tolist()]).astype(int)
        inside = np.all((index >= 0) & (index < np.array(image.GetSize())), axis=1)
        found = np.zeros(len(index), np.uint8)
        i, j, k = index[inside].T
        found[inside] = codes[k, j, i]
        return found, mni[:, 0]

    def locate(self, centre_ras: Sequence[float]) -> tuple[str, str, str]:
        """(region, category, side) of one subject RAS point, e.g. ``('thalamus', 'deep', 'left')``."""
        codes, x = self._codes(np.asarray(centre_ras, dtype=float))
        region = REGION_NAMES.get(int(codes[0]), OUTSIDE_REGION)
        return region, _category(region), _side(float(x[0]))

    def annotate(self, lesions: list[Lesion], label_map: np.ndarray | None = None) -> None:
        """Fill ``region``, ``category``, ``side`` and ``certainty`` of every lesion in place.

        ``label_map`` (``[k, j, i]`` on :attr:`reference`'s grid, holding each :attr:`Lesion.label`) enables
        the majority-region fallback and the shape criterion.
        """
        voxels = _lesion_voxels(label_map, self.reference) if label_map is not None else {}
        spacing = self.reference.GetSpacing() if self.reference is not None else (1.0, 1.0, 1.0)
        for lesion in lesions:
            region, category, side = self.locate(lesion.centre_ras)
            points = voxels.get(lesion.label)
            if region == OUTSIDE_REGION and points is not None:
                codes, _ = self._codes(points)
                labelled = Counter(int(c) for c in codes if c)
                if labelled:
                    region = REGION_NAMES[labelled.most_common(1)[0][0]]
                    category = _category(region)
            lesion.region, lesion.category, lesion.side = region, category, side
            lesion.certainty = _certainty(lesion, points, region, spacing)


def _side(mni_x: float) -> str:
    return "right" if mni_x >= 0 else "left"


def _lesion_voxels(label_map: np.ndarray, reference: sitk.Image | None) -> dict[int, np.ndarray]:
    """Subject RAS points (n, 3) of each label's voxels."""
    if reference is None:
        raise ValueError("a label map needs the rater's reference image (use MarsRater.from_image).")
    if label_map.shape != tuple(reference.GetSize()[::-1]):
        raise ValueError(f"label map shape {label_map.shape} does not match the image {reference.GetSize()[::-1]}.")
    kji = np.argwhere(label_map > 0)
    labels = label_map[tuple(kji.T)]
    ras = index_to_ras(reference, kji[:, ::-1].astype(float)) if len(kji) else np.zeros((0, 3))
    return {int(label): ras[labels == label] for label in np.unique(labels)}


def elongation(points_mm: np.ndarray, spacing: Iterable[float] = (0.0, 0.0, 0.0)) -> float:
    """Square root of the ratio of the two largest principal moments of a voxel cloud (1 = round).

    Each voxel adds its own extent (``spacing**2 / 12`` per axis) so a one-slice lesion is not a disc.

    >>> round(elongation(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0.]]), (1, 1, 1)), 1)
    4.0
    """
    covariance = np.cov(points_mm.T, bias=True) + np.diag(np.square(np.asarray(spacing, dtype=float)) / 12)
    moments = np.sort(np.linalg.eigvalsh(covariance))[::-1]
    return float(np.sqrt(moments[0] / max(moments[1], 1e-9)))


def _certainty(lesion: Lesion, points: np.ndarray | None, region: str, spacing: Sequence[float]) -> str:
    definite = (
        region != OUTSIDE_REGION
        and lesion.diameter_mm <= MAX_DEFINITE_DIAMETER_MM
        and lesion.mean_probability >= MIN_DEFINITE_PROBABILITY
    )
    if definite and points is not None and len(points) >= _MIN_VOXELS_FOR_SHAPE:
        definite = elongation(points, spacing) <= MAX_DEFINITE_ELONGATION
    return "definite" if definite else "possible"


def _row(category: str, region: str, side: str, counts: Counter) -> dict[str, Any]:
    definite, possible = counts["definite"], counts["possible"]
    return {"category": category, "region": region, "side": side,
            "definite": definite, "possible": possible, "total": definite + possible}


def count_table(lesions: Iterable[Lesion]) -> list[dict[str, Any]]:
    """MARS counts from an annotated lesion list.

    Layout (keys :data:`TABLE_COLUMNS`; counts are ints, ``total = definite + possible``):

    - for each category of :data:`MARS_CATEGORIES`: one row per region of that category (order of
      :data:`MARS_REGIONS`) and side (left, right), then the category's total row
      (``region="all"``, ``side="both"``);
    - only when some lesion lies outside the brain: rows ``unclassified / outside_brain / left|right`` and
      their total row;
    - last, the overall row ``all / all / both``.

    The category comes from the region (so correcting a region is enough); unannotated lesions or
    unknown names raise ``ValueError``.

    >>> rows = count_table([])
    >>> rows[0]["region"], rows[-1]["total"], len(rows)
    ('frontal', 0, 30)
    """
    counts: Counter = Counter()
    for lesion in lesions:
        if lesion.side not in SIDES or lesion.certainty not in CERTAINTIES:
            raise ValueError(
                f"lesion {lesion.label} has side {lesion.side!r} and certainty {lesion.certainty!r}; "
                "annotate lesions with MarsRater.annotate (or set them) before counting."
            )
        counts[(_category(lesion.region), lesion.region, lesion.side, lesion.certainty)] += 1

    def block(category: str, regions: Sequence[str]) -> list[dict[str, Any]]:
        rows = [_row(category, r, s, Counter({c: counts[(category, r, s, c)] for c in CERTAINTIES}))
                for r in regions for s in SIDES]
        total = Counter({c: sum(n for key, n in counts.items() if key[0] == category and key[3] == c) for c in CERTAINTIES})
        return rows + [_row(category, ALL, BOTH, total)]

    rows = []
    for category in MARS_CATEGORIES:
        rows += block(category, [r for r, c in MARS_REGIONS.items() if c == category])
    if any(key[0] == UNCLASSIFIED for key in counts):
        rows += block(UNCLASSIFIED, [OUTSIDE_REGION])
    overall = Counter({c: sum(n for key, n in counts.items() if key[3] == c) for c in CERTAINTIES})
    return rows + [_row(ALL, ALL, BOTH, overall)]

