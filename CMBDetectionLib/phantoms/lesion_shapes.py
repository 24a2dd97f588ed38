"""Non-spherical microbleeds: elongated (an ellipsoid of the sphere's volume) and irregular (lobulated) shapes.

A shape measures how far an offset lies from the lesion's centre on the sphere's scale: the surface is where
:meth:`LesionShape.distance` equals the radius. An ellipsoid stretches space (``stretch``, determinant 1); an
irregular outline lets the surface radius vary by direction as ``1 + sum_k a_k (u . v_k)^3`` (unit offset ``u``,
random directions ``v_k``, ``sum |a_k|`` = the irregularity), bumps on one side and dents on the other.

>>> shape = draw_shape(np.random.default_rng(0), elongation=2.0, irregularity=0.0)
>>> round(shape.reach, 3)
1.587
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

N_LOBES = 3


@dataclass(frozen=True)
class LesionShape:
    """``stretch`` (3x3, det 1) maps an offset (mm, ``[k, j, i]``) onto the sphere's scale; ``directions`` (m, 3)
    and ``amplitudes`` (m,) make the outline irregular."""

    stretch: np.ndarray
    directions: np.ndarray
    amplitudes: np.ndarray

    @property
    def reach(self) -> float:
        """The farthest the surface gets from the centre, in radii."""
        longest = 1.0 / float(np.linalg.svd(self.stretch, compute_uv=False).min())
        return longest * (1.0 + float(np.abs(self.amplitudes).sum()))

    def distance(self, dk: np.ndarray, dj: np.ndarray, di: np.ndarray) -> np.ndarray:
        """Offsets (broadcast ``[k, j, i]`` mm arrays) in sphere-equivalent mm: ``<= radius`` is inside."""
        offsets = np.stack(np.broadcast_arrays(dk, dj, di), axis=-1)
        stretched = offsets @ self.stretch.T
        length = np.linalg.norm(stretched, axis=-1)
        unit = stretched / np.maximum(length, 1e-9)[..., None]
        bumps = ((unit @ self.directions.T) ** 3) @ self.amplitudes
        return length / (1.0 + bumps)


def draw_shape(rng: np.random.Generator, elongation: float, irregularity: float) -> LesionShape:
    """A random shape: long axis ``elongation`` times the short ones (volume kept), outline ``irregularity``."""
    rotation = Rotation.random(random_state=rng).as_matrix()
    axes = np.array([elongation ** (2 / 3), elongation ** (-1 / 3), elongation ** (-1 / 3)])
    stretch = rotation @ np.diag(1.0 / axes) @ rotation.T
    directions = rng.normal(size=(N_LOBES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    amplitudes = rng.uniform(-1.0, 1.0, N_LOBES)
    amplitudes *= irregularity / max(float(np.abs(amplitudes).sum()), 1e-9)
    return LesionShape(stretch, directions, amplitudes)
