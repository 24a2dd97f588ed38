"""Quality figures of one subject, for its report and the cohort table: SNR, brain coverage, warnings.

- **SNR**: median head signal over the noise level of the air around the head. On a magnitude image the air
  holds Rician noise whose mean is ``sigma * sqrt(pi / 2)``, so ``sigma`` is estimated from the air's mean (its
  standard deviation would be biased by the Rician floor). The head is the Otsu foreground, filled and dilated by
  :data:`AIR_MARGIN_VOXELS`; without :data:`MIN_AIR_VOXELS` of air (a field of view cropped to the brain), or with
  air of exactly 0 (a masked image), the SNR is unknown (None).
- **Brain coverage**: the share of the MNI template brain that the volume covers after registration
  (``mars.registration``); None without a registration.
- **Warnings**: anything a reader of the counts should know: MARS not rated (and why), low SNR, partial
  coverage, an unusually high lesion count (veins or artefacts taken for CMBs?).

>>> import SimpleITK as sitk
>>> rng = np.random.default_rng(0)
>>> head = np.pad(np.full((8, 20, 20), 300.0), ((4, 4), (10, 10), (10, 10)))
>>> noisy = np.hypot(head + rng.normal(0, 10, head.shape), rng.normal(0, 10, head.shape))
>>> 25 < estimate_snr(sitk.GetImageFromArray(noisy.astype(np.float32))) < 35
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

AIR_MARGIN_VOXELS = 3
MIN_AIR_VOXELS = 500
LOW_SNR = 10.0
LOW_COVERAGE = 0.85
MANY_LESIONS = 50


@dataclass
class QualityControl:
    """QC of one subject: ``snr`` and ``coverage`` (0..1) are None when unknown; ``warnings`` are sentences."""

    snr: float | None = None
    coverage: float | None = None
    tissue_contrast: float | None = None
    warnings: list[str] = field(default_factory=list)


def _otsu(image: sitk.Image) -> float:
    """Otsu's head/air threshold, from SimpleITK: the Slicer export writes this report, and Slicer has no
    scikit-image until the module's packages are installed."""
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(sitk.Cast(image, sitk.sitkFloat32))
    return otsu.GetThreshold()


def estimate_snr(image: sitk.Image) -> float | None:
    """Median head signal over the Rician noise sigma of the surrounding air (None when it cannot be measured)."""
    values = sitk.GetArrayViewFromImage(image).astype(np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.max() <= finite.min():
        return None
    head = ndimage.binary_fill_holes(values > _otsu(image))
    air = ~ndimage.binary_dilation(head, iterations=AIR_MARGIN_VOXELS)
    air_values = values[air & np.isfinite(values)]
    if air_values.size < MIN_AIR_VOXELS or air_values.mean() <= 0:
        return None
    sigma = air_values.mean() / np.sqrt(np.pi / 2)
    return float(np.median(values[head]) / sigma)


def quality_control(image: sitk.Image, registration=None, mars_error: str | None = None,
                    n_lesions: int = 0) -> QualityControl:
    """The QC of one subject: ``registration`` is the run's ``MniRegistration`` (None when MARS did not run).

    >>> qc = quality_control(sitk.Image(8, 8, 8, sitk.sitkFloat32), mars_error="registration failed")
    >>> qc.snr, qc.warnings
    (None, ['MARS not rated: registration failed', 'SNR could not be measured (no air around the head).'])
    """
    qc = QualityControl(snr=estimate_snr(image))
    if registration is not None:
        qc.coverage, qc.tissue_contrast = registration.coverage, registration.tissue_contrast
    if mars_error:
        qc.warnings.append(f"MARS not rated: {mars_error}")
    if qc.snr is None:
        qc.warnings.append("SNR could not be measured (no air around the head).")
    elif qc.snr < LOW_SNR:
        qc.warnings.append(f"low SNR ({qc.snr:.1f} < {LOW_SNR:g}): small CMBs may be missed.")
    if qc.coverage is not None and qc.coverage < LOW_COVERAGE:
        qc.warnings.append(f"the volume covers {qc.coverage:.0%} of the brain: lesions outside it are not counted.")
    if n_lesions > MANY_LESIONS:
        qc.warnings.append(f"{n_lesions} lesions: check the gallery for veins or artefacts taken for CMBs.")
    return qc
