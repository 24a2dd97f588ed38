"""The data every stage hands to the next: a lesion list and a detection result.

Flow: volume (``sitk.Image``) -> probability map -> :class:`DetectionResult` (label map + lesions)
-> files (``outputs.py``) or MRML nodes (the Slicer module).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk


@dataclass
class Lesion:
    """One candidate microbleed.

    ``label`` is its value in :attr:`DetectionResult.label_map`. Centres are centres of mass.
    MARS fields (``region``, ``category``, ``side``, ``certainty``) stay empty until ``mars`` fills them.
    """

    label: int
    centre_ras: tuple[float, float, float]
    centre_ijk: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    n_voxels: int
    mean_probability: float
    max_probability: float
    region: str = ""
    category: str = ""
    side: str = ""
    certainty: str = ""

    def as_row(self) -> dict[str, Any]:
        """Flat dict (one CSV or table row): centres split into ``centre_R/A/S`` and ``centre_i/j/k``."""
        row = asdict(self)
        row.update(zip(("centre_R", "centre_A", "centre_S"), row.pop("centre_ras")))
        row.update(zip(("centre_i", "centre_j", "centre_k"), row.pop("centre_ijk")))
        return row


@dataclass
class DetectionResult:
    """Output of one detection run on one volume.

    ``probability`` and ``label_map`` are ``[k, j, i]`` arrays on ``reference``'s grid; ``label_map`` holds
    0 for background and :attr:`Lesion.label` inside each lesion.
    """

    reference: sitk.Image
    probability: np.ndarray
    label_map: np.ndarray
    lesions: list[Lesion]
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return (self.label_map > 0).astype(np.uint8)
