"""The SWI phantom: determinism, label correctness, mimics and the ``cmb-phantom`` CLI (small grids, seeds < 1000)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.cli.phantom import main
from CMBDetectionLib.imageio.volumes import index_to_ras, ras_to_index
from CMBDetectionLib.mars.regions import REGION_NAMES, load_region_map
from CMBDetectionLib.phantoms.anatomy import CATEGORY_OF
from CMBDetectionLib.phantoms.generator import generate_subject, write_subject

SMALL = dict(size=128, spacing=1.8, slice_thickness=3.0, n_slices=48)
TEST_SEEDS = range(25, 60)  # 25 qualifies with the current generator; the search keeps tests valid if it changes


@pytest.fixture(scope="module")
def subject():
    """The first test seed whose subject has 3+ CMBs in all three MARS categories (~15 % of seeds)."""
    for seed in TEST_SEEDS:
        candidate = generate_subject(seed, **SMALL)
        if len(candidate.cmbs) >= 3 and {c.category for c in candidate.cmbs} == {"lobar", "deep", "infratentorial"}:
            return candidate
    pytest.fail(f"no seed in {TEST_SEEDS} gives CMBs in all three categories: check the CMB placement")


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _components(subject) -> tuple[np.ndarray, int]:
    return ndimage.label(_array(subject.cmb_mask))  # 6-connected, as the lesion extractor


def test_same_seed_gives_same_subject(subject):
    again = generate_subject(subject.seed, **SMALL)
    for name in ("image", "cmb_mask", "brain_mask", "vein_mask", "calcification_mask"):
        np.testing.assert_array_equal(_array(getattr(subject, name)), _array(getattr(again, name)), err_msg=name)
    assert again.cmbs == subject.cmbs
    other = generate_subject(subject.seed + 1, **SMALL)
    assert not np.array_equal(_array(other.image), _array(subject.image))


def test_images_share_one_grid_and_types(subject):
    assert subject.image.GetPixelID() == sitk.sitkInt16
    for mask in (subject.cmb_mask, subject.brain_mask, subject.vein_mask, subject.calcification_mask):
        assert mask.GetPixelID() == sitk.sitkUInt8
        assert mask.GetSize() == subject.image.GetSize() == (128, 128, 48)
        assert mask.GetSpacing() == subject.image.GetSpacing() == (1.8, 1.8, 3.0)
        assert mask.GetOrigin() == subject.image.GetOrigin()
    brain = _array(subject.brain_mask) > 0
    assert 0.05 < brain.mean() < 0.6


def test_json_centres_match_mask_components(subject):
    labels, n = _components(subject)
    assert n == len(subject.cmbs) >= 3
    assert {c.category for c in subject.cmbs} == {"lobar", "deep", "infratentorial"}
    coms = index_to_ras(subject.image, np.array(ndimage.center_of_mass(labels > 0, labels, range(1, n + 1)))[:, ::-1])
    for cmb in subject.cmbs:
        distance = np.linalg.norm(coms - np.array(cmb.centre_ras), axis=1)
        assert distance.min() < 1.5, f"no mask component within 1.5 mm of {cmb}"
        assert 2.0 <= cmb.diameter_mm <= 10.0


def test_every_cmb_is_dark_and_inside_the_brain(subject):
    image = _array(subject.image).astype(float)
    brain = _array(subject.brain_mask) > 0
    labels, n = _components(subject)
    for number in range(1, n + 1):
        inside = labels == number
        assert brain[inside].all(), "CMB voxel outside the brain mask"
        shell = ndimage.binary_dilation(inside, iterations=3) & ~ndimage.binary_dilation(inside, iterations=1)
        assert image[inside].mean() < 0.75 * image[shell].mean()


def test_labels_agree_with_the_mars_region_map(subject):
    regions = sitk.GetArrayFromImage(load_region_map())
    reference = load_region_map()
    for cmb in subject.cmbs:
        assert CATEGORY_OF[cmb.region] == cmb.category
        assert cmb.side == ("right" if cmb.centre_mni[0] > 0 else "left")
        i, j, k = np.rint(ras_to_index(reference, cmb.centre_mni)).astype(int)
        assert REGION_NAMES[int(regions[k, j, i])] == cmb.region


def test_veins_and_calcifications_are_present_and_dark(subject):
    image = _array(subject.image).astype(float)
    brain = _array(subject.brain_mask) > 0
    veins = (_array(subject.vein_mask) > 0) & brain
    calcs = _array(subject.calcification_mask) > 0
    tissue = brain & ~veins & ~calcs & (_array(subject.cmb_mask) == 0)
    assert veins.sum() > 200
    assert calcs.sum() > 0
    assert image[veins].mean() < 0.85 * np.median(image[tissue])
    # Calcifications sit in bright CSF (pineal recess, choroid plexus): compare with what surrounds them.
    shell = ndimage.binary_dilation(calcs, iterations=2) & ~ndimage.binary_dilation(calcs)
    assert image[calcs].mean() < 0.8 * image[shell].mean()
    # Veins are the main mimic: thin, elongated, and not labelled as CMBs.
    assert not (veins & (_array(subject.cmb_mask) > 0)).any()


def test_cli_writes_four_files_per_subject(tmp_path, capsys):
    args = ["-o", str(tmp_path), "--n", "2", "--seed", "30", "--size", "64", "--spacing", "3.6",
            "--slice-thickness", "6", "--slices", "24", "-q"]
    assert main(args) == 0
    for seed in (30, 31):
        stem = tmp_path / f"phantom_{seed:05d}"
        swi, cmb, brain = (sitk.ReadImage(f"{stem}_{kind}.nii.gz") for kind in ("swi", "cmb", "brain"))
        assert swi.GetPixelID() == sitk.sitkInt16 and cmb.GetPixelID() == brain.GetPixelID() == sitk.sitkUInt8
        for mask in (cmb, brain):
            assert mask.GetSize() == swi.GetSize() == (64, 64, 24)
            np.testing.assert_allclose(mask.GetOrigin(), swi.GetOrigin())
            np.testing.assert_allclose(mask.GetSpacing(), swi.GetSpacing())
        listed = json.loads((tmp_path / f"phantom_{seed:05d}_cmbs.json").read_text())
        for cmb in listed:
            assert {"centre_ras", "diameter_mm", "region", "category", "side"} <= set(cmb)
    assert len(list(tmp_path.iterdir())) == 8


def test_write_subject_paths(subject, tmp_path):
    paths = write_subject(subject, tmp_path)
    assert set(paths) == {"swi", "cmb", "brain", "cmbs"}
    assert all(p.exists() for p in paths.values())
    assert len(json.loads(paths["cmbs"].read_text())) == len(subject.cmbs)


@pytest.mark.parametrize("bad", [["--n", "0"], ["--spacing", "-1"], ["--size", "abc"]])
def test_cli_rejects_bad_arguments(tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exit_info:
        main(["-o", str(tmp_path)] + bad)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_unwritable_output_fails_with_a_clear_message(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["-o", str(blocker / "out"), "--size", "64", "--spacing", "3.6", "--slices", "12", "-q"]) == 1
    err = capsys.readouterr().err
    assert "cannot create output folder" in err and "-o" in err


def test_cli_ood_set_uses_its_own_seeds_and_settings(tmp_path):
    assert main(["-o", str(tmp_path), "--ood-set", "partial-slab", "-q"]) == 0
    swi = sitk.ReadImage(str(tmp_path / "phantom_21400_swi.nii.gz"))  # partial-slab is set 14: seeds 21400-21499
    assert swi.GetSize()[:2] == (256, 256) and 8 <= swi.GetSize()[2] <= 30


def test_cli_randomise_draws_from_the_wide_preset(tmp_path):
    args = ["-o", str(tmp_path), "--randomise", "--seed", "40", "--size", "64", "--spacing", "3.6", "-q"]
    assert main(args) == 0
    swi = sitk.ReadImage(str(tmp_path / "phantom_00040_swi.nii.gz"))
    assert swi.GetSize()[:2] == (64, 64)
    assert not np.allclose(np.array(swi.GetDirection()).reshape(3, 3), np.eye(3))  # seed 40: a tilted slab


@pytest.mark.parametrize("bad, words", [
    (["--ood-set", "snr-8-12", "--size", "64"], "--ood-set snr-8-12 fixes its own grid"),
    (["--ood-set", "snr-8-12", "--seed", "5"], "owns seeds 20600-20699"),
    (["--randomise", "--size", "64"], "needs a fixed in-plane spacing"),
])
def test_cli_refuses_settings_that_contradict_each_other(tmp_path, capsys, bad, words):
    assert main(["-o", str(tmp_path), "-q"] + bad) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_cli_randomise_and_ood_set_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["-o", str(tmp_path), "--randomise", "--ood-set", "snr-8-12"])
    assert exit_info.value.code == 2
