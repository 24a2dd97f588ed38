"""MARS rating: region map, locating points, certainty, the count table, and accuracy on a posed phantom."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.errors import RegistrationError
from CMBDetectionLib.imageio.volumes import index_to_ras
from CMBDetectionLib.mars.atlas import aal_labels_matching, load_mni_atlas
from CMBDetectionLib.mars.rating import (
    MARS_CATEGORIES,
    MARS_REGIONS,
    OUTSIDE_REGION,
    TABLE_COLUMNS,
    MarsRater,
    count_table,
    elongation,
)
from CMBDetectionLib.mars.regions import REGION_CODES, load_region_map
from CMBDetectionLib.outputs.mars_table import write_mars_table
from CMBDetectionLib.results import Lesion


def _lesion(label: int, centre=(0.0, 0.0, 0.0), **fields) -> Lesion:
    base = dict(diameter_mm=4.0, volume_mm3=20.0, n_voxels=20, mean_probability=0.9, max_probability=0.95)
    base.update(fields)
    return Lesion(label=label, centre_ras=tuple(centre), centre_ijk=(0.0, 0.0, 0.0), **base)


@pytest.fixture(scope="module")
def mni_rater() -> MarsRater:
    """A rater for points already in MNI space (no registration)."""
    return MarsRater(registration=None)


def test_region_map_is_cached_and_fast_to_load() -> None:
    load_region_map()  # builds on a fresh machine
    start = time.perf_counter()
    regions = sitk.GetArrayFromImage(load_region_map())
    assert time.perf_counter() - start < 1.0
    present = set(np.unique(regions).tolist()) - {0}
    assert present == set(REGION_CODES.values())


def test_region_map_agrees_with_aal_where_aal_defines_the_region() -> None:
    atlas = load_mni_atlas()
    regions = sitk.GetArrayFromImage(load_region_map())
    for region, prefix in [("thalamus", "Thalamus"), ("basal_ganglia", "Putamen"), ("cerebellum", "Cerebelum"),
                           ("insula", "Insula"), ("occipital", "Calcarine")]:
        inside = np.isin(atlas.array("aal"), aal_labels_matching(atlas, prefix))
        assert np.mean(regions[inside] == REGION_CODES[region]) > 0.99, region


@pytest.mark.parametrize(
    "ras, expected",
    [
        ((-12.0, -18.0, 8.0), ("thalamus", "deep", "left")),
        ((25.0, 4.0, 2.0), ("basal_ganglia", "deep", "right")),
        ((0.0, -28.0, -32.0), ("brainstem", "infratentorial", "right")),
        ((-25.0, -65.0, -35.0), ("cerebellum", "infratentorial", "left")),
        ((-35.0, 45.0, 25.0), ("frontal", "lobar", "left")),
        ((55.0, -20.0, -10.0), ("temporal", "lobar", "right")),
        ((-25.0, -5.0, 30.0), ("deep_white_matter", "deep", "left")),
        ((0.0, 200.0, 0.0), (OUTSIDE_REGION, "unclassified", "right")),
    ],
)
def test_locate_known_mni_points(mni_rater: MarsRater, ras, expected) -> None:
    assert mni_rater.locate(ras) == expected


def _mni_reference() -> sitk.Image:
    """A small 1 mm grid around the left thalamus, in MNI space (RAS (-22, -30, 0) to (-2, -10, 20))."""
    image = sitk.Image([21, 21, 21], sitk.sitkUInt8)
    image.SetOrigin((22.0, 30.0, 0.0))  # LPS of RAS (-22, -30, 0)
    image.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))  # i -> R, j -> A: RAS-aligned
    return image


def test_annotate_sets_region_side_and_certainty_from_shape_size_and_probability() -> None:
    reference = _mni_reference()
    rater = MarsRater(registration=None, reference=reference)
    labels = np.zeros((21, 21, 21), np.int32)
    k, j, i = np.indices(labels.shape)
    ball = (i - 10) ** 2 + (j - 12) ** 2 + (k - 8) ** 2 <= 4
    labels[ball] = 1
    labels[3, 3, 2:16] = 2  # a 14 mm line: a vessel
    labels[15, 15:17, 15:17] = 3

    def centre(label: int) -> tuple[float, ...]:
        return tuple(index_to_ras(reference, np.argwhere(labels == label).mean(axis=0)[::-1]).tolist())

    lesions = [
        _lesion(1, centre(1), diameter_mm=5.0),
        _lesion(2, centre(2), diameter_mm=14.0),
        _lesion(3, centre(3), diameter_mm=2.0, mean_probability=0.4),
    ]
    rater.annotate(lesions, labels)
    assert [(les.region, les.category, les.side) for les in lesions[:1]] == [("thalamus", "deep", "left")]
    assert [les.certainty for les in lesions] == ["definite", "possible", "possible"]
    assert all(les.side == "left" for les in lesions)


def test_elongation_separates_a_ball_from_a_tube() -> None:
    grid = np.argwhere(np.ones((5, 5, 5))) - 2.0
    ball = grid[np.linalg.norm(grid, axis=1) <= 2]
    tube = np.array([[x, 0.0, 0.0] for x in range(10)])
    assert elongation(ball, (1, 1, 1)) < 1.2
    assert elongation(tube, (1, 1, 1)) > 3


def _random_lesions(rng: np.random.Generator, n: int) -> list[Lesion]:
    regions = list(MARS_REGIONS) + [OUTSIDE_REGION]
    lesions = []
    for label in range(1, n + 1):
        lesion = _lesion(label)
        lesion.region = str(rng.choice(regions))
        lesion.side = str(rng.choice(["left", "right"]))
        lesion.certainty = str(rng.choice(["definite", "possible"]))
        lesions.append(lesion)
    return lesions


def test_count_table_always_equals_the_lesion_list() -> None:
    rng = np.random.default_rng(42)
    for _ in range(200):
        lesions = _random_lesions(rng, int(rng.integers(0, 25)))
        rows = count_table(lesions)
        detail = [r for r in rows if r["region"] != "all"]
        overall = rows[-1]
        assert (overall["category"], overall["region"], overall["side"]) == ("all", "all", "both")
        assert overall["total"] == len(lesions) == sum(r["total"] for r in detail)
        for row in rows:
            assert row["definite"] + row["possible"] == row["total"]
        for row in detail:
            match = [les for les in lesions if (les.region, les.side) == (row["region"], row["side"])]
            assert row["definite"] == sum(les.certainty == "definite" for les in match)
            assert row["total"] == len(match)
        for category in MARS_CATEGORIES:
            total_row = next(r for r in rows if r["category"] == category and r["region"] == "all")
            in_category = [les for les in lesions if MARS_REGIONS.get(les.region) == category]
            assert total_row["total"] == len(in_category)
        has_outside = any(les.region == OUTSIDE_REGION for les in lesions)
        assert any(r["category"] == "unclassified" for r in rows) == has_outside


def test_count_table_layout_and_csv(tmp_path) -> None:
    lesions = _random_lesions(np.random.default_rng(0), 6)
    for lesion in lesions:
        lesion.region = "thalamus"
    rows = count_table(lesions)
    assert len(rows) == 2 * len(MARS_REGIONS) + len(MARS_CATEGORIES) + 1
    path = write_mars_table(rows, tmp_path / "S_mars.csv")
    with path.open() as handle:
        read = list(csv.DictReader(handle))
    assert tuple(read[0]) == TABLE_COLUMNS
    assert [int(r["total"]) for r in read] == [r["total"] for r in rows]
    assert int(read[-1]["total"]) == 6


def test_count_table_refuses_unannotated_or_unknown_lesions() -> None:
    with pytest.raises(ValueError, match="annotate"):
        count_table([_lesion(1)])
    lesion = _lesion(1)
    lesion.region, lesion.side, lesion.certainty = "hippocampus", "left", "definite"
    with pytest.raises(ValueError, match="unknown MARS region"):
        count_table([lesion])


@pytest.fixture(scope="module")
def phantom():
    from CMBDetectionLib.phantoms.generator import generate_subject

    subject = generate_subject(3)
    assert len(subject.cmbs) >= 3, "test phantom needs CMBs to rate"
    return subject


def test_true_cmbs_of_a_posed_phantom_get_their_category_and_side(phantom) -> None:
    rater = MarsRater.from_image(phantom.image)
    located = [rater.locate(cmb.centre_ras) for cmb in phantom.cmbs]
    category = np.mean([loc[1] == cmb.category for loc, cmb in zip(located, phantom.cmbs)])
    side = np.mean([loc[2] == cmb.side for loc, cmb in zip(located, phantom.cmbs)])
    assert category >= 0.9 and side >= 0.95, (located, phantom.cmbs)
    lesions = [_lesion(n + 1, cmb.centre_ras) for n, cmb in enumerate(phantom.cmbs)]
    rater.annotate(lesions)
    assert count_table(lesions)[-1]["total"] == len(phantom.cmbs)


def test_failed_registration_gives_an_error_and_no_table() -> None:
    # A blank volume fails fast; noise and non-brain objects are covered in test_registration.py.
    blank = sitk.Image([64, 64, 30], sitk.sitkFloat32)
    lesions = [_lesion(1)]
    with pytest.raises(RegistrationError, match="head/brain SWI"):
        MarsRater.from_image(blank).annotate(lesions)
    assert lesions[0].region == "" and lesions[0].certainty == ""
