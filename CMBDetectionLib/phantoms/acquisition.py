"""The simulated scan of a phantom head: pose, slab geometry, resampling, blur, bias field and Rician noise.

The subject grid is an axial acquisition of ``size x size`` voxels of ``spacing`` mm in-plane and ``n_slices``
slices ``slice_thickness`` mm apart, centred on the posed brain. Its direction is the slab's tilt (a rotation,
identity by default) times the voxel order (``LPS`` by default: i toward the left, j posterior, k superior).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from CMBDetectionLib.imageio.volumes import ras_to_lps
from CMBDetectionLib.phantoms.settings import AXIS_LETTERS, check_voxel_order

MNI_BRAIN_CENTRE_RAS = (0.0, -18.0, 10.0)


@dataclass(frozen=True)
class Pose:
    """Head pose: an MNI LPS point ``p`` sits at ``matrix @ (p - centre) + centre + shift`` in the scanner."""

    matrix: np.ndarray
    centre: np.ndarray
    shift: np.ndarray

    @property
    def scale(self) -> float:
        """Mean linear scale (subject mm per MNI mm)."""
        return float(abs(np.linalg.det(self.matrix)) ** (1 / 3))

    def mni_ras_to_subject_lps(self, ras: np.ndarray) -> np.ndarray:
        lps = ras_to_lps(np.atleast_2d(ras))
        return (lps - self.centre) @ self.matrix.T + self.centre + self.shift

    def subject_to_mni_transform(self) -> sitk.AffineTransform:
        """The resampling transform (scanner point -> MNI point), the inverse of the pose."""
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(np.linalg.inv(self.matrix).ravel().tolist())
        transform.SetCenter((self.centre + self.shift).tolist())
        transform.SetTranslation((-self.shift).tolist())
        return transform


def random_pose(
    rng: np.random.Generator, rotation_deg: float = 10.0, scale_range: tuple[float, float] = (0.9, 1.1)
) -> Pose:
    """Rotation up to ``rotation_deg`` about a random axis, scale in ``scale_range`` (+-3 % per axis), shift up to
    5 mm."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    rotation = Rotation.from_rotvec(np.radians(rng.uniform(0, rotation_deg)) * axis).as_matrix()
    scale = rng.uniform(*scale_range) * (1 + rng.uniform(-0.03, 0.03, 3))
    return Pose(rotation @ np.diag(scale), ras_to_lps(MNI_BRAIN_CENTRE_RAS), rng.uniform(-5, 5, 3))


def voxel_order_matrix(code: str) -> np.ndarray:
    """Columns: the LPS unit vectors the i, j, k axes point to for an axis code.

    >>> voxel_order_matrix("RAS").diagonal().tolist()
    [-1.0, -1.0, 1.0]
    """
    return np.array([AXIS_LETTERS[letter] for letter in check_voxel_order(code)], float).T


def tilt_frame(angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A slab frame tilted by ``angle_deg`` about a random in-plane axis (columns: in-plane axes, slab normal)."""
    heading = rng.uniform(0, 2 * np.pi)
    axis = np.array([np.cos(heading), np.sin(heading), 0.0])
    return Rotation.from_rotvec(np.radians(angle_deg) * axis).as_matrix()


def subject_grid(
    brain_ras: np.ndarray, pose: Pose, size: int, spacing: float, thickness: float, n_slices: int,
    rng: np.random.Generator, frame: np.ndarray | None = None, order: str = "LPS", slab_fraction: float | None = None,
) -> sitk.Image:
    """An empty float32 image on the acquisition grid, its slab centred on the posed brain (``brain_ras``: MNI points).

    ``frame`` (a rotation, :func:`tilt_frame`) tilts the slab, ``order`` is the voxel order. A slab thinner than the
    brain is aligned 2 mm above the vertex, or, given ``slab_fraction`` (0..1), placed that far from the brain's
    lowest point (0) to the vertex (1)."""
    frame = np.eye(3) if frame is None else frame
    pts = pose.mni_ras_to_subject_lps(brain_ras) @ frame  # in the slab's frame (exact for the identity)
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    centre[:2] += rng.uniform(-4, 4, 2)
    slack = n_slices * thickness - (hi[2] - lo[2])
    if slack >= 0:
        centre[2] += rng.uniform(-0.25, 0.25) * slack
    elif slab_fraction is None:  # a short slab keeps the vertex and loses the lower medulla, as a planned SWI would
        centre[2] = hi[2] + 2.0 - n_slices * thickness / 2
    else:  # a partial slab anywhere: the vertex or the cerebellum may be cut
        centre[2] = lo[2] + n_slices * thickness / 2 + slab_fraction * (hi[2] + 2.0 - lo[2] - n_slices * thickness)
    grid = sitk.Image([size, size, n_slices], sitk.sitkFloat32)
    spacing_xyz = np.array([spacing, spacing, thickness])
    direction = frame @ voxel_order_matrix(order)
    grid.SetSpacing(spacing_xyz.tolist())
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin((frame @ centre - direction @ ((np.array([size, size, n_slices]) - 1) / 2 * spacing_xyz)).tolist())
    return grid


def resample(
    mni_array: np.ndarray, mni_reference: sitk.Image, grid: sitk.Image, pose: Pose, linear: bool = True,
    warp: sitk.Transform | None = None,
) -> np.ndarray:
    """An MNI-space array seen through the pose (and the non-linear ``warp``, MNI point -> anatomy point) on the
    subject grid (``[k, j, i]`` float32)."""
    moving = sitk.GetImageFromArray(np.ascontiguousarray(mni_array, dtype=np.float32))
    moving.CopyInformation(mni_reference)
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    transform = pose.subject_to_mni_transform()
    if warp is not None:  # a composite applies its last transform first: the pose, then the warp
        transform = sitk.CompositeTransform([warp, transform])
    out = sitk.Resample(moving, grid, transform, interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def bias_field(
    shape: tuple[int, int, int], spacing_kji: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> np.ndarray:
    """Smooth multiplicative receive-coil field: brighter periphery plus a random low-order gradient (~+-20 % at
    ``strength`` 1; the log-field scales with ``strength``)."""
    axes = [(np.arange(n) - (n - 1) / 2) * s / 100.0 for n, s in zip(shape, spacing_kji)]  # decimetres
    k, j, i = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    linear = rng.uniform(-0.12, 0.12, 3)
    quad = rng.uniform(0.05, 0.25)
    cross = rng.uniform(-0.1, 0.1, 3)
    log_field = linear[0] * k + linear[1] * j + linear[2] * i + quad * (i**2 + j**2) + cross[0] * i * j
    log_field = log_field + cross[1] * j * k + cross[2] * i * k
    return np.exp(strength * log_field).astype(np.float32)


def blur(array: np.ndarray, rng: np.random.Generator, sigma_range: tuple[float, float] = (0.3, 0.6)) -> np.ndarray:
    """Slight point-spread blur (``sigma_range`` voxels in-plane, 0.3 of that across slices)."""
    sigma = rng.uniform(*sigma_range) * np.array([0.3, 1.0, 1.0])
    return ndimage.gaussian_filter(array, sigma, truncate=3.0)


def rician(array: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of std ``sigma`` (Rician)."""
    real = array + np.float32(sigma) * rng.standard_normal(array.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(array.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)
