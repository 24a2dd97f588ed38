"""Phantom settings: default settings reproduce the original generator bit for bit, bad settings fail in one line."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import SimpleITK as sitk

from CMBDetectionLib.phantoms.generator import generate_subject
from CMBDetectionLib.phantoms.lesion_shapes import draw_shape
from CMBDetectionLib.phantoms.settings import DEFAULT, RANDOMISED, PhantomSettings, check_voxel_order

TINY = dict(size=64, spacing=3.6, slice_thickness=6.0, n_slices=24)
# sha256 over the image, CMB, brain, vein and calcification arrays of seed 3 on TINY, computed with the generator
# as it was before it took settings (commit 9d56e87): held-out sets and trained models rely on these subjects.
ORIGINAL_SEED_3 = "2fba372860631487759e0b7edea5e6cfd40773d515025deaf28fa61a0ec46f9c"


def _digest(subject) -> str:
    digest = hashlib.sha256()
    for name in ("image", "cmb_mask", "brain_mask", "vein_mask", "calcification_mask"):
        digest.update(sitk.GetArrayFromImage(getattr(subject, name)).tobytes())
    return digest.hexdigest()


def test_default_settings_reproduce_the_original_generator():
    by_arguments = generate_subject(3, **TINY)
    by_settings = generate_subject(3, settings=DEFAULT.with_grid(**TINY))
    assert _digest(by_arguments) == _digest(by_settings) == ORIGINAL_SEED_3
    assert by_arguments.cmbs == by_settings.cmbs


def test_randomised_settings_change_the_subject_and_stay_deterministic():
    grid = dict(spacing=3.6, slice_thickness=6.0)
    first = generate_subject(3, settings=RANDOMISED.with_grid(**grid))
    again = generate_subject(3, settings=RANDOMISED.with_grid(**grid))
    assert _digest(first) == _digest(again)
    assert _digest(first) != ORIGINAL_SEED_3
    assert first.params["voxel_order"] in RANDOMISED.voxel_orders


@pytest.mark.parametrize("changes, words", [
    (dict(snr=(40.0, 12.0)), "snr=(40.0, 12.0) is reversed"),
    (dict(in_plane_mm=(0.1, 0.9)), "in_plane_mm=(0.1, 0.9) is out of range; use 0.2-5 mm"),
    (dict(cmb_depth=(0.5, 1.5)), "cmb_depth=(0.5, 1.5) is out of range"),
    (dict(snr=12.0), "snr=12.0 is not a (low, high) pair"),
    (dict(p_clustered=2.0), "p_clustered=2.0 is not a probability"),
    (dict(lesion_renderer="cubes"), "lesion_renderer='cubes' is unknown; use one of sphere, dipole"),
    (dict(slab_position="middle"), "slab_position='middle' is unknown"),
    (dict(voxel_orders=("LSP",)), "voxel order 'LSP' is not an axial axis code"),
    (dict(voxel_orders=()), "voxel_orders is empty"),
    (dict(te_ms=0.0), "te_ms=0.0 is out of range"),
])
def test_bad_settings_fail_with_one_clear_line(changes, words):
    with pytest.raises(ValueError) as error:
        PhantomSettings(**changes)
    message = str(error.value)
    assert words in message and "\n" not in message and message.endswith(".")


def test_a_fixed_matrix_needs_a_fixed_spacing():
    with pytest.raises(ValueError, match="needs a fixed in-plane spacing"):
        RANDOMISED.with_grid(size=128)
    assert RANDOMISED.with_grid(size=128, spacing=1.8).grid_size(1.8) == 128


def test_settings_round_trip_through_plain_values():
    assert PhantomSettings.from_dict(RANDOMISED.as_dict()) == RANDOMISED
    with pytest.raises(ValueError, match="unknown phantom setting"):
        PhantomSettings.from_dict({"snr_range": [1, 2]})


@pytest.mark.parametrize("code", ["LPS", "RAS", "LAS", "RAI", "PLS"])
def test_axial_voxel_orders_are_accepted(code):
    assert check_voxel_order(code) == code


@pytest.mark.parametrize("code", ["LPP", "SPL", "XYZ", "LP"])
def test_other_voxel_orders_are_refused(code):
    with pytest.raises(ValueError, match="axial axis code"):
        check_voxel_order(code)


def test_lesion_shapes_keep_their_outline_within_the_drawn_limits():
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(500, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    irregular = draw_shape(rng, elongation=1.0, irregularity=0.3)
    # The surface radius along u is 1 / distance(u): it varies, within +-30 %.
    surface = 1.0 / irregular.distance(*directions.T)
    assert surface.min() >= 0.7 - 1e-9 and surface.max() <= 1.3 + 1e-9
    assert surface.max() - surface.min() > 0.2
    elongated = draw_shape(rng, elongation=2.5, irregularity=0.0)
    surface = 1.0 / elongated.distance(*directions.T)
    assert surface.max() / surface.min() == pytest.approx(2.5, rel=0.1)
    assert elongated.reach == pytest.approx(2.5 ** (2 / 3))
