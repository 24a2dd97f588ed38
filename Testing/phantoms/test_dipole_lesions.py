"""Dipole-field CMBs: blooming grows with TE, B0 and voxel size, follows B0, converges, and keeps partial volume."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from CMBDetectionLib.phantoms import dipole_lesions
from CMBDetectionLib.phantoms.dipole_lesions import (
    render_dipole_lesions,
    static_dephasing_r2prime,
)

AXIAL = (1, 0, 0, 0, 1, 0, 0, 0, 1)
CORONAL = (1, 0, 0, 0, 0, 1, 0, -1, 0)  # slices along the patient's y: B0 (z) runs along the j axis


def _render(spacing=(1.0, 1.0, 1.0), b0=3.0, te=20.0, radius=1.0, chi=1.0, half_mm=8.0, shift=(0.0, 0.0, 0.0),
            direction=AXIAL, supersample=5, r2prime=None):
    """One lesion at the centre voxel (plus ``shift`` voxels) of a uniform image; returns (signal, labels, centre)."""
    spacing = np.asarray(spacing, float)
    shape = tuple(2 * int(np.ceil(half_mm / s)) + 1 for s in spacing)
    centre = (np.array(shape) - 1) / 2 + np.asarray(shift)
    signal, labels = render_dipole_lesions(np.ones(shape, np.float32), spacing, direction, centre[None], [radius],
                                           [chi], b0_tesla=b0, te_ms=te, supersample=supersample,
                                           r2prime_hz=r2prime)
    return signal, labels, centre


def _mask_volume(spacing=(1.0, 1.0, 1.0), **kwargs) -> float:
    """Volume (mm^3) of the half-loss truth mask."""
    return float((_render(spacing, **kwargs)[1] > 0).sum() * np.prod(spacing))


def _loss_volume(spacing=(1.0, 1.0, 1.0), **kwargs) -> float:
    """Signal void volume (mm^3): the sum of each voxel's loss times its volume."""
    return float((1 - _render(spacing, **kwargs)[0]).sum() * np.prod(spacing))


def test_blooming_grows_with_echo_time():
    masks = [_mask_volume(te=te) for te in (10.0, 20.0, 40.0)]
    voids = [_loss_volume(te=te) for te in (10.0, 20.0, 40.0)]
    assert masks[0] < masks[1] < masks[2], masks
    assert voids[0] < voids[1] < voids[2], voids
    assert voids[2] > 4 * (4 / 3 * np.pi), "at 40 ms the void should be several times the deposit"


def test_blooming_grows_with_field_strength():
    masks = [_mask_volume(b0=b0) for b0 in (1.5, 3.0, 7.0)]
    voids = [_loss_volume(b0=b0) for b0 in (1.5, 3.0, 7.0)]
    assert masks[0] < masks[1] < masks[2], masks
    assert voids[0] < voids[1] < voids[2], voids


def test_blooming_grows_with_voxel_size():
    # The half-loss mask is whole voxels (quantised); the signal void measures the dark area continuously.
    voids = [_loss_volume((h, h, h)) for h in (0.5, 1.0, 2.0)]
    assert voids[0] < voids[1] < voids[2], voids
    thick = _loss_volume((3.0, 0.5, 0.5))
    assert thick > voids[0], "thicker slices must bloom more than the same in-plane grid at 0.5 mm"


@pytest.mark.parametrize("direction, b0_axis", [(AXIAL, 0), (CORONAL, 1)])
def test_dark_pattern_is_elongated_along_b0(direction, b0_axis):
    signal, _, centre = _render((0.5, 0.5, 0.5), direction=direction)
    c = tuple(int(x) for x in centre)
    for distance in (4, 5, 6):  # 2-3 mm from the centre, outside the 1 mm deposit
        losses = []
        for axis in range(3):
            here = list(c)
            here[axis] += distance
            losses.append(1 - signal[tuple(here)])
        across = [loss for axis, loss in enumerate(losses) if axis != b0_axis]
        # Along B0 the field is twice as strong and twice as steep as across it (3 cos^2 - 1 = 2 vs -1).
        assert losses[b0_axis] > 2 * max(across) > 0, (distance, losses)


def test_zero_susceptibility_changes_nothing():
    image = np.random.default_rng(3).uniform(50, 400, (15, 15, 15)).astype(np.float32)
    out, labels = render_dipole_lesions(image, (1.0, 1.0, 1.0), AXIAL, np.array([[7.0, 7.0, 7.0], [3.2, 9.5, 4.1]]),
                                        [1.5, 0.8], [0.0, 0.0], b0_tesla=7.0, te_ms=30.0)
    np.testing.assert_array_equal(out, image)
    assert not labels.any()


def test_field_inside_the_sphere_is_zero():
    # A voxel wholly inside the sphere keeps its phase (Lorentz-corrected inner field 0): only the deposit's decay.
    signal, _, centre = _render(radius=3.0, r2prime=0.0)
    c = tuple(int(x) for x in centre)
    assert signal[c] > 0.999
    signal, _, _ = _render(radius=3.0, chi=0.5, te=20.0)
    assert signal[c] == pytest.approx(np.exp(-static_dephasing_r2prime(0.5, 3.0) * 0.020), abs=1e-4)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.9, 0.9)])
def test_signal_void_converges_with_supersampling(spacing):
    coarse, fine = (_loss_volume(spacing, supersample=s, shift=(0.2, -0.3, 0.4)) for s in (5, 13))
    assert coarse == pytest.approx(fine, rel=0.03)
    one_sample = _loss_volume(spacing, supersample=1, shift=(0.2, -0.3, 0.4))
    assert abs(one_sample - fine) > abs(coarse - fine), "sampling one point per voxel should be the worst"


def test_half_voxel_shift_gives_a_plausible_mask():
    _, centred, _ = _render()
    signal, shifted, centre = _render(shift=(0.5, 0.5, 0.5))
    _, count = ndimage.label(shifted > 0)
    assert count == 1
    assert 0.5 < (shifted > 0).sum() / (centred > 0).sum() < 2.0
    np.testing.assert_allclose(ndimage.center_of_mass(1 - signal), centre, atol=0.05)
    np.testing.assert_allclose(ndimage.center_of_mass(shifted > 0), centre, atol=0.05)


def test_box_holds_the_signal_loss(monkeypatch):
    signal, labels, _ = _render(b0=7.0, te=30.0, half_mm=14.0)
    monkeypatch.setattr(dipole_lesions, "BOX_LOSS_TOLERANCE", 1e-7)
    wide, wide_labels, _ = _render(b0=7.0, te=30.0, half_mm=14.0)
    assert np.abs(signal - wide).max() < 2e-3
    np.testing.assert_array_equal(labels, wide_labels)


def test_lesions_are_numbered_and_far_ones_render_independently():
    image = np.ones((20, 30, 30), np.float32)
    centres = np.array([[10.0, 7.0, 8.0], [10.0, 22.0, 21.0]])
    both, labels = render_dipole_lesions(image, (1.0, 1.0, 1.0), AXIAL, centres, [1.0, 1.5], [1.0, 0.6])
    alone = [render_dipole_lesions(image, (1.0, 1.0, 1.0), AXIAL, c[None], [r], [x])[0]
             for c, r, x in zip(centres, [1.0, 1.5], [1.0, 0.6])]
    assert np.abs(both - alone[0] * alone[1]).max() < 2e-3
    assert labels[10, 7, 8] == 1 and labels[10, 22, 21] == 2


def test_close_lesions_add_their_fields():
    image = np.ones((16, 20, 20), np.float32)
    centres = np.array([[8.0, 10.0, 7.0], [8.0, 10.0, 12.0]])  # 5 mm apart, across B0
    both, labels = render_dipole_lesions(image, (1.0, 1.0, 1.0), AXIAL, centres, [1.0, 1.0], [1.5, 1.5])
    alone = [render_dipole_lesions(image, (1.0, 1.0, 1.0), AXIAL, c[None], [1.0], [1.5])[0] for c in centres]
    assert np.abs(both - alone[0] * alone[1]).max() > 0.02, "fields add: not a product of the two signals"
    assert set(np.unique(labels)) == {0, 1, 2}


@pytest.mark.parametrize("kwargs, message", [
    ({"radii_mm": [-1.0]}, "radii must be > 0"),
    ({"chi_ppm": [40.0]}, "|chi| <="),
    ({"centres_kji": np.array([[30.0, 5.0, 5.0]])}, "outside the grid"),
    ({"radii_mm": [1.0, 2.0]}, "give one of each"),
    ({"supersample": 0}, "supersample"),
    ({"te_ms": 0.0}, "TE"),
    ({"direction": (1, 0, 0, 0, 2, 0, 0, 0, 1)}, "not orthonormal"),
])
def test_bad_input_gives_a_one_line_error(kwargs, message):
    args = {"image_array": np.ones((10, 10, 10)), "spacing_kji": (1.0, 1.0, 1.0), "direction": AXIAL,
            "centres_kji": np.array([[5.0, 5.0, 5.0]]), "radii_mm": [1.0], "chi_ppm": [0.5]}
    with pytest.raises(ValueError, match=message.replace("|", r"\|")) as error:
        render_dipole_lesions(**{**args, **kwargs})
    assert "\n" not in str(error.value)
