"""The simulated scan of a phantom head: pose, slab geometry, resampling, blur, bias field and Rician noise.

The subject grid is an axial acquisition (direction = identity, i.e. LPS axes) of ``size x size`` voxels
of ``spacing`` mm in-plane and ``n_slices`` slices ``slice_thickness`` mm apart, centred on the posed brain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from CMBDetectionLib.imageio.volumes import ras_to_lps

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


def random_pose(rng: np.random.Generator) -> Pose:
    """Rotation up to 10 degrees about a random axis, scale 0.9-1.1 (+-3 % per axis), shift up to 5 mm."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    rotation = Rotation.from_rotvec(np.radians(rng.uniform(0, 10)) * axis).as_matrix()
    scale = rng.uniform(0.9, 1.1) * (1 + rng.uniform(-0.03, 0.03, 3))
    return Pose(rotation @ np.diag(scale), ras_to_lps(MNI_BRAIN_CENTRE_RAS), rng.uniform(-5, 5, 3))


def subject_grid(
    brain_ras: np.ndarray, pose: Pose, size: int, spacing: float, thickness: float, n_slices: int, rng: np.random.Generator
) -> sitk.Image:
    """An empty float32 image on the acquisition grid, its slab centred on the posed brain (``brain_ras``: MNI points).

    A slab thinner than the brain is aligned 2 mm above the vertex."""
    pts = pose.mni_ras_to_subject_lps(brain_ras)
    lo, hi = pts.min(0), pts.max(0)
    centre = (lo + hi) / 2
    centre[:2] += rng.uniform(-4, 4, 2)
    slack = n_slices * thickness - (hi[2] - lo[2])
    if slack >= 0:
        centre[2] += rng.uniform(-0.25, 0.25) * slack
    else:  # a short slab keeps the vertex and loses the lower medulla, as a planned SWI would
        centre[2] = hi[2] + 2.0 - n_slices * thickness / 2
    grid = sitk.Image([size, size, n_slices], sitk.sitkFloat32)
    spacing_xyz = np.array([spacing, spacing, thickness])
    grid.SetSpacing(spacing_xyz.tolist())
    grid.SetOrigin((centre - (np.array([size, size, n_slices]) - 1) / 2 * spacing_xyz).tolist())
    return grid


def subject_lps_to_kji(grid: sitk.Image, lps: np.ndarray) -> np.ndarray:
    """Scanner LPS points (n, 3) to continuous ``[k, j, i]`` indices of the (axis-aligned) grid."""
    ijk = (np.atleast_2d(lps) - np.array(grid.GetOrigin())) / np.array(grid.GetSpacing())
    return ijk[:, ::-1]


def resample(mni_array: np.ndarray, mni_reference: sitk.Image, grid: sitk.Image, pose: Pose, linear: bool = True) -> np.ndarray:
    """An MNI-space array seen through the pose on the subject grid (``[k, j, i]`` float32)."""
    moving = sitk.GetImageFromArray(np.ascontiguousarray(mni_array, dtype=np.float32))
    moving.CopyInformation(mni_reference)
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = sitk.Resample(moving, grid, pose.subject_to_mni_transform(), interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def bias_field(shape: tuple[int, int, int], spacing_kji: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative receive-coil field: brighter periphery plus a random low-order gradient (~+-20 %)."""
    axes = [(np.arange(n) - (n - 1) / 2) * s / 100.0 for n, s in zip(shape, spacing_kji)]  # decimetres
    k, j, i = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    linear = rng.uniform(-0.12, 0.12, 3)
    quad = rng.uniform(0.05, 0.25)
    cross = rng.uniform(-0.1, 0.1, 3)
    log_field = linear[0] * k + linear[1] * j + linear[2] * i + quad * (i**2 + j**2) + cross[0] * i * j
    log_field = log_field + cross[1] * j * k + cross[2] * i * k
    return np.exp(log_field).astype(np.float32)


def blur(array: np.ndarray, spacing_kji: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slight point-spread blur (0.3-0.6 voxel in-plane)."""
    sigma = rng.uniform(0.3, 0.6) * np.array([0.3, 1.0, 1.0])
    return ndimage.gaussian_filter(array, sigma, truncate=3.0)


def rician(array: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of std ``sigma`` (Rician)."""
    real = array + np.float32(sigma) * rng.standard_normal(array.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(array.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)
