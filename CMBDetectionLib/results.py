"""The data every stage hands to the next: a lesion list and a detection result.

Flow: volume (``sitk.Image``) -> probability map -> :class:`DetectionResult` (label map + lesions)
-> files (``outputs``) or MRML nodes (the Slicer module).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

# A lesion is a 6-connected component (voxels sharing a face), in every stage that labels dark or probable voxels.
SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


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


@dataclass
class DetectionResult:
    """Output of one detection run on one volume.

    ``probability`` and ``label_map`` are ``[k, j, i]`` arrays on ``reference``'s grid; ``label_map`` holds
    0 for background and :attr:`Lesion.label` inside each lesion. ``mars_counts`` is the MARS count table
    (``mars.rating.count_table`` rows) when MARS rating ran, else None; ``mars_error`` says why it could not
    run when it was asked for and failed. ``provenance`` records how the run was made (method, model,
    threshold, device, seconds). ``timings`` holds the wall seconds of each stage :func:`pipeline.detect` ran
    (``network``, ``lesion_filter``, ``lesions``, ``registration``, ``mars``; registration runs beside the
    network, so the stages may add up to more than ``provenance["seconds"]``). ``registration`` is the checked
    ``mars.registration.MniRegistration`` the MARS rating used (None when it did not run or failed; reports draw it).

    >>> empty = np.zeros((2, 3, 4), np.uint8)
    >>> result = DetectionResult(sitk.Image(4, 3, 2, sitk.sitkUInt8), empty.astype(np.float32), empty, [])
    >>> int(result.mask.sum()), result.mars_counts, result.mars_error
    (0, None, None)
    """

    reference: sitk.Image
    probability: np.ndarray
    label_map: np.ndarray
    lesions: list[Lesion]
    provenance: dict[str, Any] = field(default_factory=dict)
    mars_counts: list[dict[str, Any]] | None = None
    mars_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    registration: Any = None

    @property
    def mask(self) -> np.ndarray:
        return (self.label_map > 0).astype(np.uint8)
