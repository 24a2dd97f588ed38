"""A smooth random non-linear warp of the MNI anatomy (beyond the head pose's affine scale and rotation).

The warp is a displacement field ``d`` on a coarse grid over the MNI template, in physical LPS millimetres: the
image at MNI point ``q`` shows the anatomy of ``q + d(q)``. Images go through it as a SimpleITK transform
(:meth:`RandomWarp.transform`); points placed in the anatomy (veins, CMB centres) go the other way, by
fixed-point inversion (:meth:`RandomWarp.unwarp_ras`).

>>> warp = RandomWarp.draw(load_anatomy().reference, 5.0, np.random.default_rng(0))   # doctest: +SKIP
>>> warp.unwarp_ras(np.array([[0.0, -18.0, 10.0]]))                                   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.imageio.volumes import lps_to_ras, ras_to_lps

NODE_MM = 6.0  # coarse grid spacing of the displacement field
SMOOTH_MM = 15.0  # correlation length of the random displacements
_INVERSION_STEPS = 4


@dataclass(frozen=True)
class RandomWarp:
    """Displacement components ``field`` (3, nk, nj, ni) in mm (LPS x, y, z) on a grid at ``origin`` (LPS),
    ``NODE_MM`` apart along x, y, z (axis-aligned)."""

    field: np.ndarray
    origin: np.ndarray

    @staticmethod
    def draw(reference: sitk.Image, max_mm: float, rng: np.random.Generator) -> RandomWarp:
        """A smooth random field over ``reference``'s extent whose largest displacement is ``max_mm``, fading to 0
        at the field's edge."""
        corners = np.array([reference.TransformIndexToPhysicalPoint([int(c * (n - 1)) for c, n in
                                                                     zip(corner, reference.GetSize(), strict=True)])
                            for corner in np.ndindex(2, 2, 2)])
        origin = corners.min(0) - 2 * NODE_MM
        shape = tuple(int(n) for n in np.ceil((corners.max(0) + 2 * NODE_MM - origin) / NODE_MM)[::-1] + 1)
        noise = rng.standard_normal((3, *shape))
        field = np.stack([ndimage.gaussian_filter(c, SMOOTH_MM / NODE_MM, mode="constant") for c in noise])
        # A window that is 0 on the border keeps the transform continuous where the field ends.
        window = np.ones(shape)
        for axis, n in enumerate(shape):
            profile = np.sin(np.pi * np.arange(n) / (n - 1)) ** 0.5
            window = window * profile.reshape([-1 if a == axis else 1 for a in range(3)])
        field *= window
        field *= max_mm / max(float(np.linalg.norm(field, axis=0).max()), 1e-9)
        return RandomWarp(field.astype(np.float64), origin)

    def displacement(self, lps: np.ndarray) -> np.ndarray:
        """``d`` at LPS points (n, 3), trilinear as the transform interpolates it."""
        index = ((np.atleast_2d(lps) - self.origin) / NODE_MM)[:, ::-1].T
        return np.stack([ndimage.map_coordinates(c, index, order=1, mode="constant") for c in self.field], axis=1)

    def transform(self) -> sitk.DisplacementFieldTransform:
        """The field as a SimpleITK transform (MNI point -> the anatomy's point)."""
        image = sitk.GetImageFromArray(np.moveaxis(self.field, 0, -1), isVector=True)
        image.SetOrigin(self.origin.tolist())
        image.SetSpacing([NODE_MM] * 3)
        return sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64))

    def unwarp_ras(self, ras: np.ndarray) -> np.ndarray:
        """Where anatomy at MNI RAS points ``ras`` appears after the warp (RAS): ``q`` with ``q + d(q) = p``."""
        target = ras_to_lps(np.atleast_2d(ras))
        q = target.copy()
        for _ in range(_INVERSION_STEPS):
            q = target - self.displacement(q)
        return lps_to_ras(q)
