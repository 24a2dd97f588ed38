"""Microbleeds rendered by physics: a sphere of susceptibility, its dipole field, intravoxel dephasing at TE.

A CMB is a sphere of radius ``a`` whose susceptibility differs by ``chi`` from tissue. In a field ``B0`` (the
scanner z axis, i.e. the patient's superior-inferior axis) the field perturbation is, in the Lorentz-corrected
convention used throughout MRI phase and QSM work:

- outside: ``dB = (chi * B0 / 3) * (a / r)**3 * (3 cos^2(theta) - 1)``, ``theta`` the angle to B0;
- inside: ``dB = 0`` (the sphere's own uniform inner field, ``2/3 chi B0``, cancels against the Lorentz-sphere
  correction, ``2/3 chi B0``, that the protons in it see).

Fields of neighbouring lesions add. Each voxel's magnitude is ``|mean over sub-voxels of A * exp(-i gamma dB TE)|``
over a fine grid (``supersample`` sub-voxels per voxel along the finest axis, the same step on the others),
which gives blooming and partial volume together. ``A`` is 1 in tissue and ``exp(-R2' TE)`` inside the
deposit: haemosiderin sits in clumps (siderosomes) whose own dephasing darkens the core. ``R2'`` defaults to
the static-dephasing value for spherical perturbers (Yablonskiy and Haacke, MRM 1994):
``R2' = 2 pi / (3 sqrt 3) * gamma * chi * B0 / 3``, with ``chi`` the deposit's mean susceptibility difference.

Typical values: QSM gives CMBs a mean susceptibility of a few tenths of a ppm over their outline (Naji et al.,
NMR Biomed 2024 simulate 0.4 ppm). ``chi`` here is the deposit's own: what QSM measures stably across echo
times is the total susceptibility ``chi x volume`` (Liu et al., Radiology 2012), so a deposit smaller than its
QSM outline has a larger ``chi``. About 0.3-2 ppm for radii 0.5-2 mm covers faint to strongly blooming CMBs.
Calcifications are diamagnetic (negative ``chi``) and bloom the same way on magnitude images.

The ground truth is the lesion's half signal loss, as everywhere in the project's phantoms: a voxel belongs to a
lesion when its signal factor is at most 0.5 and that lesion's centre is the nearest; each lesion keeps its
largest 6-connected part. A lesion too faint to lose half the signal anywhere gets no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

GAMMA_RAD_PER_S_PER_T = 2 * np.pi * 42.577e6
MAX_ABS_CHI_PPM = 5.0
HALF_LOSS = 0.5
# Signal loss left out at the edge of each lesion's box (per voxel): the box ends where the dephasing within a
# voxel costs less than this.
BOX_LOSS_TOLERANCE = 1e-3
# |grad (a/r)^3 (3 cos^2 - 1)| <= this / r * (a/r)^3, from 6 radially and 3 across, summed in quadrature.
_FIELD_GRADIENT_BOUND = float(np.hypot(6.0, 3.0))


def b0_axis_kji(direction: Sequence[float]) -> np.ndarray:
    """The unit B0 vector (physical z) in the grid's millimetre frame, ordered ``(k, j, i)``.

    ``direction`` is SimpleITK's row-major 3x3 direction matrix (its columns are the i, j, k axes in LPS), so
    the z component of each axis is its last row.

    >>> b0_axis_kji((1, 0, 0, 0, 1, 0, 0, 0, 1)).tolist()
    [1.0, 0.0, 0.0]
    >>> np.round(b0_axis_kji((1, 0, 0, 0, 0, 1, 0, -1, 0)), 3).tolist()   # coronal slices: B0 along -j
    [0.0, -1.0, 0.0]
    """
    matrix = np.asarray(direction, float).reshape(3, 3)
    if not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-4):
        raise ValueError(f"direction {tuple(direction)} is not orthonormal; give the image's GetDirection().")
    return matrix[2, ::-1].copy()


def static_dephasing_r2prime(chi_ppm: float, b0_tesla: float) -> float:
    """Extra decay rate (1/s) inside a deposit of clumped spherical perturbers of mean susceptibility ``chi_ppm``.

    >>> round(static_dephasing_r2prime(0.3, 3.0))
    97
    """
    return float(2 * np.pi / (3 * np.sqrt(3)) * GAMMA_RAD_PER_S_PER_T * abs(chi_ppm) * 1e-6 * b0_tesla / 3)


def box_radius_mm(radius_mm: float, chi_ppm: float, b0_tesla: float, te_ms: float, max_spacing_mm: float) -> float:
    """Half-width of the box rendered around a lesion: beyond it each voxel loses under ``BOX_LOSS_TOLERANCE``.

    A phase gradient ``g`` across a voxel of width ``h`` leaves ``sinc(g h / 2) ~ 1 - (g h)^2 / 24`` of the
    signal, and the dipole field's gradient falls as ``r**-4``; the box also covers the sphere plus one voxel.

    >>> round(box_radius_mm(1.0, 0.3, 3.0, 20.0, 1.0), 2)
    2.89
    """
    phase_scale = GAMMA_RAD_PER_S_PER_T * abs(chi_ppm) * 1e-6 * b0_tesla / 3 * te_ms * 1e-3
    max_gradient_times_h = np.sqrt(24 * BOX_LOSS_TOLERANCE)
    far = (phase_scale * _FIELD_GRADIENT_BOUND * radius_mm**3 * max_spacing_mm / max_gradient_times_h) ** 0.25
    return float(max(far, radius_mm + max_spacing_mm))


def render_dipole_lesions(
    image_array: np.ndarray,
    spacing_kji: Sequence[float],
    direction: Sequence[float],
    centres_kji: np.ndarray,
    radii_mm: Sequence[float],
    chi_ppm: Sequence[float],
    b0_tesla: float = 3.0,
    te_ms: float = 20.0,
    supersample: int = 5,
    r2prime_hz: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Darken ``image_array`` (``[k, j, i]``) with dipole-field CMBs; returns ``(image, label_map)``.

    ``centres_kji`` are continuous voxel coordinates (n x 3), ``radii_mm`` the deposits' radii, ``chi_ppm``
    their susceptibility differences. ``direction`` is the grid's SimpleITK direction; B0 is physical z.
    ``r2prime_hz`` overrides the deposits' static-dephasing decay (0 turns it off). The image is multiplied by
    the signal factor in [0, 1]; the label map (uint16, 1..n) holds each lesion's voxels of half signal loss
    or more (see the module docstring); the input is not modified.

    >>> image = np.ones((12, 16, 16), np.float32)
    >>> out, labels = render_dipole_lesions(image, (1.0, 1.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1),
    ...                                     np.array([[6.0, 8.0, 8.0]]), [1.0], [0.5], b0_tesla=3.0, te_ms=20.0)
    >>> bool(out.min() < 0.5), int(labels.max()), bool(labels[6, 8, 8] == 1)
    (True, 1, True)

    On a SimpleITK image ``img``: ``render_dipole_lesions(sitk.GetArrayFromImage(img),
    img.GetSpacing()[::-1], img.GetDirection(), centres_kji, ...)``.
    """
    spacing = np.asarray(spacing_kji, float)
    centres = np.asarray(centres_kji, float).reshape(-1, 3)
    radii = np.asarray(radii_mm, float)
    chis = np.asarray(chi_ppm, float)
    _check_inputs(image_array.shape, spacing, centres, radii, chis, b0_tesla, te_ms, supersample, r2prime_hz)
    r2prime = [static_dephasing_r2prime(c, b0_tesla) if r2prime_hz is None else r2prime_hz for c in chis]
    lesions = _Lesions(centres * spacing, radii, chis * 1e-6 * b0_tesla / 3, np.exp(-np.array(r2prime) * te_ms * 1e-3),
                       b0_axis_kji(direction))
    half = [np.ceil(box_radius_mm(a, c, b0_tesla, te_ms, spacing.max()) / spacing).astype(int)
            for a, c in zip(radii, chis)]
    boxes = [_box(centre, h, image_array.shape) for centre, h in zip(centres, half)]
    signal = np.ones(image_array.shape, np.float32)
    labels = np.zeros(image_array.shape, np.uint16)
    for box in boxes:
        near = [n for n, other in enumerate(boxes) if _overlap(box, other)]
        box_signal = _box_signal(box, spacing, lesions.subset(near), GAMMA_RAD_PER_S_PER_T * te_ms * 1e-3,
                                 supersample)
        signal[box] = box_signal
        labels[box] = _nearest_labels(box, spacing, lesions.centres_mm[near], np.array(near) + 1,
                                      box_signal <= HALF_LOSS)
    for number, box in enumerate(boxes, start=1):
        _keep_largest_part(labels[box], number)
    return (image_array * signal).astype(np.result_type(image_array.dtype, np.float32)), labels


@dataclass(frozen=True)
class _Lesions:
    """Lesion parameters as arrays in the grid's millimetre frame (k, j, i).

    ``field_scale`` is ``chi B0 / 3`` (tesla), ``decay`` the deposit's ``exp(-R2' TE)``.
    """

    centres_mm: np.ndarray
    radii: np.ndarray
    field_scale: np.ndarray
    decay: np.ndarray
    b0_axis: np.ndarray

    def subset(self, index: list[int]) -> _Lesions:
        """The lesions at ``index``."""
        return _Lesions(self.centres_mm[index], self.radii[index], self.field_scale[index], self.decay[index],
                        self.b0_axis)


def sub_voxels_per_axis(spacing_kji: Sequence[float], supersample: int) -> np.ndarray:
    """Sub-voxels per voxel along k, j, i: ``supersample`` along the finest axis, as fine a step on the others.

    An isotropic fine grid keeps a thick slice from undersampling the sphere and its steep near field.

    >>> sub_voxels_per_axis((3.0, 0.9, 0.9), 5).tolist()
    [17, 5, 5]
    """
    spacing = np.asarray(spacing_kji, float)
    return np.ceil(supersample * spacing / spacing.min() - 1e-9).astype(int)


def _box_signal(box: tuple[slice, ...], spacing: np.ndarray, lesions: _Lesions, phase_per_tesla: float,
                supersample: int) -> np.ndarray:
    """Signal factor of each voxel in ``box``: magnitude of the complex mean over its sub-voxels.

    One voxel plane along k at a time bounds memory to the sub-voxels of one plane of the box.
    """
    counts = sub_voxels_per_axis(spacing, supersample)
    fine = [_fine_axis(axis_slice, step, n) for axis_slice, step, n in zip(box, spacing, counts)]
    n_j, n_i = box[1].stop - box[1].start, box[2].stop - box[2].start
    out = np.empty((box[0].stop - box[0].start, n_j, n_i), np.float32)
    for plane in range(out.shape[0]):
        k_mm = fine[0][plane * counts[0]:(plane + 1) * counts[0]]
        points = np.meshgrid(k_mm, fine[1], fine[2], indexing="ij")
        field, amplitude = _field_and_amplitude(points, lesions)
        phase = phase_per_tesla * field
        blocks = [(amplitude * part(phase)).reshape(counts[0], n_j, counts[1], n_i, counts[2]).mean(axis=(0, 2, 4))
                  for part in (np.cos, np.sin)]
        out[plane] = np.hypot(*blocks)
    return out


def _fine_axis(axis_slice: slice, step_mm: float, count: int) -> np.ndarray:
    """Sub-voxel centres (mm) along one axis, ``count`` per voxel, each voxel's in a run.

    >>> _fine_axis(slice(2, 3), 1.0, 2).tolist()
    [1.75, 2.25]
    """
    offsets = (np.arange(count) + 0.5) / count - 0.5
    # float32 halves the work; the phase near a deposit (tens of radians) keeps ~1e-5 rad of precision.
    return ((np.arange(axis_slice.start, axis_slice.stop)[:, None] + offsets[None, :]) * step_mm).ravel().astype(
        np.float32)


def _field_and_amplitude(points: list[np.ndarray], lesions: _Lesions) -> tuple[np.ndarray, np.ndarray]:
    """Summed field (tesla) and the deposits' decay factor at ``points`` (k, j, i mm arrays)."""
    field = np.zeros(points[0].shape, np.float32)
    amplitude = np.ones(points[0].shape, np.float32)
    axis = lesions.b0_axis.tolist()
    # Python floats keep the arithmetic in float32 (NumPy scalars would promote it to float64).
    for centre, radius, scale, decay in zip(lesions.centres_mm.tolist(), lesions.radii.tolist(),
                                            lesions.field_scale.tolist(), lesions.decay.tolist()):
        d = [p - c for p, c in zip(points, centre)]
        r2 = d[0] ** 2 + d[1] ** 2 + d[2] ** 2
        along = d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]
        inside = r2 <= radius**2
        safe_r2 = np.where(inside, radius**2, r2)
        # (a/r)^3 (3 cos^2 - 1) = a^3 (3 along^2 - r^2) / r^5; zero inside (Lorentz-corrected convention).
        field += np.where(inside, 0.0, scale * radius**3 * (3 * along**2 - safe_r2) / safe_r2**2.5)
        amplitude = np.where(inside, amplitude * decay, amplitude)
    return field, amplitude


def _nearest_labels(box: tuple[slice, ...], spacing: np.ndarray, centres_mm: np.ndarray, numbers: np.ndarray,
                    dark: np.ndarray) -> np.ndarray:
    """Label of each dark voxel in ``box``: the number of the nearest lesion centre (0 where not dark)."""
    grid = np.meshgrid(*[np.arange(s.start, s.stop) * step for s, step in zip(box, spacing)], indexing="ij")
    distance = np.stack([sum((g - c) ** 2 for g, c in zip(grid, centre)) for centre in centres_mm])
    return np.where(dark, numbers[np.argmin(distance, axis=0)], 0).astype(np.uint16)


def _keep_largest_part(labels_box: np.ndarray, number: int) -> None:
    """Clear, in place, all but the largest 6-connected part of lesion ``number`` (truth lesions are one blob)."""
    parts, count = ndimage.label(labels_box == number)
    if count > 1:
        sizes = ndimage.sum(np.ones_like(parts), parts, range(1, count + 1))
        labels_box[(parts > 0) & (parts != 1 + int(np.argmax(sizes)))] = 0


def _box(centre: np.ndarray, half: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Voxel box of ``half`` voxels either side of ``centre``, clipped to the grid."""
    mid = np.rint(centre).astype(int)
    return tuple(slice(int(max(m - h, 0)), int(min(m + h + 1, n))) for m, h, n in zip(mid, half, shape))


def _overlap(a: tuple[slice, ...], b: tuple[slice, ...]) -> bool:
    """Whether two voxel boxes share a voxel."""
    return all(x.start < y.stop and y.start < x.stop for x, y in zip(a, b))


def _check_inputs(shape: tuple[int, ...], spacing: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                  chis: np.ndarray, b0_tesla: float, te_ms: float, supersample: int, r2prime_hz: float | None) -> None:
    """Raise ``ValueError`` with a one-line fix for any argument the renderer cannot use."""
    if len(shape) != 3 or spacing.shape != (3,) or np.any(spacing <= 0):
        raise ValueError(f"need a 3D [k, j, i] image and 3 positive spacings; got shape {shape}, spacing {spacing}.")
    if not len(centres) == len(radii) == len(chis):
        raise ValueError(f"{len(centres)} centres, {len(radii)} radii, {len(chis)} chi values: "
                         "give one of each per lesion.")
    outside = np.any((centres < -0.5) | (centres > np.array(shape) - 0.5), axis=1)
    if np.any(outside):
        raise ValueError(f"lesion centre {centres[np.argmax(outside)].tolist()} lies outside the grid {shape}; "
                         "give [k, j, i] voxel coordinates inside it.")
    if np.any(~(radii > 0)) or np.any(~(np.abs(chis) <= MAX_ABS_CHI_PPM)):
        raise ValueError(f"radii must be > 0 mm and |chi| <= {MAX_ABS_CHI_PPM} ppm; "
                         f"got radii {radii.tolist()}, chi {chis.tolist()}.")
    if not (0 < b0_tesla <= 12 and 0 < te_ms <= 200):
        raise ValueError(f"B0 {b0_tesla} T / TE {te_ms} ms out of range; use 0-12 T and 0-200 ms (e.g. 3 T, 20 ms).")
    if not (isinstance(supersample, (int, np.integer)) and 1 <= supersample <= 31):
        raise ValueError(f"supersample {supersample!r} must be an integer 1-31 (5 is usually enough).")
    if r2prime_hz is not None and not r2prime_hz >= 0:
        raise ValueError(f"r2prime_hz {r2prime_hz} must be >= 0 (1/s), or None for the static-dephasing value.")
