"""The OOD test matrix: each set shifts its one parameter, past both training presets, and really does so in the
images (small grids; seeds of the matrix's own blocks, so these tests generate nothing used elsewhere)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from CMBDetectionLib.imageio.volumes import index_to_ras
from CMBDetectionLib.phantoms.anatomy import load_anatomy
from CMBDetectionLib.phantoms.generator import generate_subject
from CMBDetectionLib.phantoms.lesions import place_cmbs
from CMBDetectionLib.phantoms.ood_sets import OOD_SEED_RANGE, OOD_SETS, ood_seeds, ood_set
from CMBDetectionLib.phantoms.settings import DEFAULT, RANDOMISED
from CMBDetectionLib.phantoms.veins import generate_veins

COARSE = dict(in_plane_mm=(3.0, 3.0), slice_mm=(5.0, 5.0))  # 77 x 77 x 28: a second or two per subject


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _pair(name: str, seed_offset: int = 0, grid: dict | None = None):
    """A subject of set ``name`` and the same seed without the shift, both on the coarse (or the given) grid."""
    seed, grid = ood_set(name).first_seed + seed_offset, grid or COARSE
    return (generate_subject(seed, settings=replace(ood_set(name).settings, **grid)),
            generate_subject(seed, settings=replace(DEFAULT, **grid)))


def _outside(shifted: tuple, trained: tuple) -> bool:
    """Whether range ``shifted`` lies outside ``trained`` (touching an end counts as outside)."""
    return shifted[1] <= trained[0] or shifted[0] >= trained[1]


def test_sets_have_unique_seed_blocks_inside_the_reserved_range():
    firsts = [s.first_seed for s in OOD_SETS.values()]
    assert len(set(firsts)) == len(firsts)
    assert all(OOD_SEED_RANGE[0] <= f and f + 99 <= OOD_SEED_RANGE[1] for f in firsts)
    assert ood_seeds(ood_set("oblique"), 3) == [21300, 21301, 21302]
    with pytest.raises(ValueError, match="use 1-100"):
        ood_seeds(ood_set("oblique"), 101)
    with pytest.raises(ValueError, match="unknown OOD set 'nope'; choose one of baseline"):
        ood_set("nope")


@pytest.mark.parametrize("name", [n for n in OOD_SETS if n != "baseline"])
def test_each_set_shifts_past_both_training_presets(name):
    changed = ood_set(name).changed_settings()
    assert changed, f"{name} shifts nothing"
    ranges = {k: v for k, v in changed.items() if isinstance(v, tuple) and len(v) == 2 and k != "n_slices"
              and not isinstance(v[0], str)}
    for field, shifted in ranges.items():
        assert _outside(shifted, getattr(DEFAULT, field)), f"{name}.{field} {shifted} inside the default range"
        assert _outside(shifted, getattr(RANDOMISED, field)), f"{name}.{field} {shifted} inside the randomised range"
    if "n_slices" in changed:  # coverage: at most 30 slices of 2 mm, where training slabs are 70 mm or more
        assert changed["n_slices"][1] * DEFAULT.slice_mm[1] < min(DEFAULT.slab_mm[0], RANDOMISED.slab_mm[0])
    if "lesion_renderer" in changed:
        assert RANDOMISED.lesion_renderer == DEFAULT.lesion_renderer == "sphere"
    assert not ood_set("baseline").changed_settings()


@pytest.mark.parametrize("name, spacing_xyz, size_xyz", [
    ("inplane-0.45", (0.45, 0.45, 2.0), (128, 128, 20)),
    ("inplane-1.2", (1.2, 1.2, 2.0), (48, 48, 20)),
    ("slices-1mm", (3.6, 3.6, 1.0), (32, 32, 40)),
    ("slices-3mm", (3.6, 3.6, 3.0), (32, 32, 13)),
])
def test_resolution_sets_image_at_their_voxel_size(name, spacing_xyz, size_xyz):
    # A narrow field of view and slab keep the grid small; the voxel size is the set's own.
    settings = replace(ood_set(name).settings, fov_mm=57.6, slab_mm=(40.0, 40.0))
    if name.startswith("slices"):
        settings = replace(settings, in_plane_mm=(3.6, 3.6), fov_mm=115.2)
    image = generate_subject(ood_set(name).first_seed, settings=settings).image
    np.testing.assert_allclose(image.GetSpacing(), spacing_xyz)
    assert image.GetSize() == size_xyz


def test_oblique_slabs_are_tilted_in_every_order_and_keep_truth_on_the_mask():
    seen = set()
    for offset in range(3):
        subject = generate_subject(ood_set("oblique").first_seed + offset,
                                   settings=replace(ood_set("oblique").settings, **COARSE))
        direction = np.array(subject.image.GetDirection()).reshape(3, 3)
        order = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction.ravel().tolist())
        assert order == subject.params["voxel_order"]
        seen.add(order)
        tilt = np.degrees(np.arccos(abs(direction[2, 2])))
        assert 12.0 - 1e-6 <= tilt <= 20.0 + 1e-6
        labels, n = ndimage.label(_array(subject.cmb_mask))
        assert n == len(subject.cmbs)
        if n:  # each listed centre (RAS) lies on its mask component, through the tilted geometry
            centres = index_to_ras(subject.image, np.array(ndimage.center_of_mass(labels > 0, labels,
                                                                                  range(1, n + 1)))[:, ::-1])
            for cmb in subject.cmbs:
                assert np.linalg.norm(centres - np.array(cmb.centre_ras), axis=1).min() < 3.0
    assert seen == {"LAS", "RAS", "LPS"}


def test_partial_slabs_have_8_to_30_slices():
    counts = [generate_subject(seed, settings=replace(ood_set("partial-slab").settings, in_plane_mm=(3.6, 3.6)))
              .image.GetSize()[2] for seed in ood_seeds(ood_set("partial-slab"), 3)]
    assert all(8 <= c <= 30 for c in counts) and len(set(counts)) > 1


def _measured_snr(subject) -> float:
    """Brain median over the noise level of the air in the corners (Rician: mean = sigma sqrt(pi / 2))."""
    image = _array(subject.image).astype(float)
    corners = np.concatenate([image[:, j, i].ravel() for j in (slice(0, 6), slice(-6, None))
                              for i in (slice(0, 6), slice(-6, None))])
    return float(np.median(image[_array(subject.brain_mask) > 0]) / (corners.mean() / np.sqrt(np.pi / 2)))


def test_low_snr_set_is_measurably_noisier():
    shifted, trained = _pair("snr-8-12")
    assert 8.0 <= shifted.params["snr"] <= 12.0
    assert 0.75 * shifted.params["snr"] < _measured_snr(shifted) < 1.25 * shifted.params["snr"]
    assert _measured_snr(trained) > 12.0 * 0.9


@pytest.mark.parametrize("name, low, high", [("contrast-inverted", 0.6, 0.75), ("contrast-flat", 0.98, 1.02)])
def test_contrast_sets_invert_or_flatten_grey_white(name, low, high):
    for seed in ood_seeds(ood_set(name), 4):
        ratio = generate_subject(seed, settings=replace(ood_set(name).settings, in_plane_mm=(3.6, 3.6),
                                                        slice_mm=(6.0, 6.0))).params["gm_wm_ratio"]
        assert low <= ratio <= high


def _core_contrast(subject) -> list[float]:
    """Per CMB: its mean over the mean of a shell 2-3 voxels out."""
    image = _array(subject.image).astype(float)
    labels, n = ndimage.label(_array(subject.cmb_mask))
    out = []
    for number in range(1, n + 1):
        inside = labels == number
        shell = ndimage.binary_dilation(inside, iterations=3) & ~ndimage.binary_dilation(inside, iterations=1)
        out.append(image[inside].mean() / image[shell].mean())
    return out


def test_faint_cmbs_lose_less_signal():
    shifted, trained = _pair("cmb-faint", 1)
    assert shifted.cmbs and trained.cmbs
    assert np.median(_core_contrast(shifted)) > np.median(_core_contrast(trained)) + 0.15


def test_small_cmbs_are_2_mm():
    subject = generate_subject(ood_set("cmb-2mm").first_seed, settings=replace(ood_set("cmb-2mm").settings, **COARSE))
    assert subject.cmbs and all(c.diameter_mm == 2.0 for c in subject.cmbs)


def test_twice_the_veins_widen_the_vein_mask():
    shifted, trained = _pair("veins-2x", grid=dict(in_plane_mm=(1.8, 1.8), slice_mm=(3.0, 3.0)))
    # Sinuses and deep veins stay as they are, and crossing veins share voxels: well over 1x, under 2x.
    assert _array(shifted.vein_mask).sum() > 1.3 * _array(trained.vein_mask).sum()


def test_strong_bias_spreads_the_smooth_brain_intensity():
    shifted, trained = _pair("bias-strong")

    def spread(subject) -> float:
        smooth = ndimage.gaussian_filter(_array(subject.image).astype(float), 4)[_array(subject.brain_mask) > 0]
        return float(np.percentile(smooth, 90) / np.percentile(smooth, 10)) - 1

    assert spread(shifted) > 1.4 * spread(trained)


def test_texture_roughens_the_tissue():
    shifted, trained = _pair("texture")

    def roughness(subject) -> float:
        image = _array(subject.image).astype(float)
        brain = ndimage.binary_erosion(_array(subject.brain_mask) > 0, iterations=2)
        return float(np.std((image - ndimage.median_filter(image, 3))[brain]) / np.median(image[brain]))

    assert roughness(shifted) > 1.1 * roughness(trained)


def test_air_artefact_set_darkens_the_skull_base_and_adds_spots():
    shifted, trained = _pair("air-artefacts")
    assert shifted.params["skull_base_spots"] >= 8 and shifted.params["air_extent"] >= 1.6
    low = slice(0, _array(trained.image).shape[0] // 3)
    brain = _array(trained.brain_mask)[low] > 0
    assert _array(shifted.image)[low][brain].mean() < 0.95 * _array(trained.image)[low][brain].mean()


def test_warp_moves_the_anatomy_and_its_truth_together():
    shifted, trained = _pair("warp-strong")
    a, b = _array(shifted.brain_mask) > 0, _array(trained.brain_mask) > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) < 0.99  # 1 without the warp: the pose is the same
    labels, n = ndimage.label(_array(shifted.cmb_mask))
    assert n == len(shifted.cmbs) and shifted.cmbs
    assert all(_array(shifted.brain_mask)[labels > 0])


def test_elongated_cmbs_are_longer_than_wide():
    settings = replace(ood_set("cmb-elongated").settings, in_plane_mm=(1.2, 1.2), slice_mm=(1.2, 1.2),
                       fov_mm=192.0, cmb_diameter_mm=(6.0, 8.0))
    subject = generate_subject(ood_set("cmb-elongated").first_seed, settings=settings)
    labels, n = ndimage.label(_array(subject.cmb_mask))
    assert n == len(subject.cmbs) >= 1
    for number in range(1, n + 1):
        points = np.argwhere(labels == number) * 1.2
        eigen = np.linalg.eigvalsh(np.cov(points.T))
        assert np.sqrt(eigen[-1] / eigen[0]) > 1.5


def test_clustered_cmbs_sit_close_yet_stay_separate():
    subject = generate_subject(ood_set("cmb-clustered").first_seed + 1,
                               settings=replace(ood_set("cmb-clustered").settings, in_plane_mm=(1.8, 1.8),
                                                slice_mm=(2.0, 2.0)))
    labels, n = ndimage.label(_array(subject.cmb_mask))
    assert n == len(subject.cmbs)
    centres = np.array([c.centre_ras for c in subject.cmbs])
    radii = np.array([c.diameter_mm / 2 for c in subject.cmbs])
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=2) - radii[:, None] - radii[None]
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() < 3.0  # training keeps CMBs 3 mm (MNI) apart


def test_cmbs_touching_veins_touch_them():
    # Measured on the placement (MNI mm): thin veins fall under the vein mask's threshold on a coarse grid.
    anatomy = load_anatomy()
    for settings, closest, farthest in ((ood_set("cmb-touching-veins").settings, 0.0, 0.3), (DEFAULT, 0.5, np.inf)):
        rng = np.random.default_rng(ood_set("cmb-touching-veins").first_seed)
        veins = generate_veins(anatomy, rng)
        cmbs = place_cmbs(anatomy, rng, veins, [], lambda points, margin: np.ones(len(points), bool), 1.0, settings,
                          np.random.default_rng(1))
        tree = cKDTree(veins.points[veins.in_brain])
        distance, index = tree.query(np.array([c.centre_mni for c in cmbs]))
        gaps = distance - veins.radius[veins.in_brain][index] - np.array([c.radius_mm for c in cmbs])
        assert len(cmbs) >= 3 and np.all(gaps >= closest - 1e-6)
        if farthest < np.inf:
            assert np.all(gaps <= farthest + 0.05)
        else:
            assert np.median(gaps) > 1.0


def test_dipole_set_renders_physical_lesions():
    shifted = generate_subject(ood_set("dipole").first_seed,
                               settings=replace(ood_set("dipole").settings, in_plane_mm=(1.8, 1.8)))
    labels, n = ndimage.label(_array(shifted.cmb_mask))
    assert n == len(shifted.cmbs) >= 1
    assert max(_core_contrast(shifted)) < 0.8
