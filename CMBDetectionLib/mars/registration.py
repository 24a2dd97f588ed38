"""Affine registration of a subject's SWI to the MNI152 template (SimpleITK, mutual information).

Mattes mutual information copes with SWI's contrast differing from the template's. The template is a
tissue-class image (CSF, grey and white matter as three levels, zero outside the intracranial space) built
from the MNI152 tissue maps at 2 mm, sampled inside its dilated intracranial mask only. The subject is
block-averaged to ~2 mm; the affine starts from the centre of mass of the head, is searched at 8 mm from
three head sizes (8 mm images made once), each is refined at 4 mm and the best refined one kept: ~2 CPU-seconds
(a 256x256x70 SWI; it runs beside the network in ``pipeline.detect``).

A registration is checked before anyone uses it; :class:`RegistrationError` says what failed instead of
letting a wrong MARS table through. The checks:

- the transform is not degenerate: each axis scaled by 0.7-1.4 and tilted at most 30 degrees (an
  adult head after the scanner's own alignment);
- the image explains the template's anatomy: the correlation ratio of subject intensities given the
  template's tissue classes (grey matter, white matter, CSF) is at least :data:`MIN_TISSUE_CONTRAST`.
  It is measured deep inside the template brain (over :data:`_QUALITY_DEPTH_MM` from its surface), on the
  subject smoothed by :data:`_QUALITY_SMOOTHING_MM` and divided by its :data:`_BIAS_SIGMA_MM` trend (a strong
  coil bias otherwise left a well-aligned SWI of the OOD matrix at 0.08; divided, 0.19). A ratio has no sign,
  so any contrast gives a high value once aligned: T1, T2*, SWI, inverted grey/white. Flat grey/white contrast
  does too, through the ventricles and deep nuclei. Measured on a posed template with skull, before the trend
  was divided out (the posed-template tests still pass with it), it was 0.65 with SWI contrast,
  0.49-0.53 with inverted or flat contrast, and 0.24 for flat contrast at SNR 4. The smoothing keeps noise
  from diluting it (unsmoothed, flat contrast at SNR 4 gave 0.03; the brain surface is left out, because an
  object's edge alone lifts it). Noise, a blank or a uniform brain-sized ellipsoid give under 0.01.
  Registration itself uses Mattes mutual information, which has no sign either, and it aligns flat and
  inverted contrasts within 3.5 mm;
- the image covers most of the template brain (:data:`MIN_COVERAGE`).

>>> reg = register_to_mni(read_volume("sub-01_swi.nii.gz"))      # doctest: +SKIP
>>> reg.subject_ras_to_mni_ras((10.0, -20.0, 5.0))                # doctest: +SKIP
(12.1, -25.3, 9.8)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.errors import RegistrationError
from CMBDetectionLib.imageio.volumes import lps_to_ras, ras_to_lps
from CMBDetectionLib.mars.atlas import load_mni_atlas

MIN_TISSUE_CONTRAST = 0.10
MIN_COVERAGE = 0.6
MAX_TILT_DEG = 30.0
SCALE_RANGE = (0.7, 1.4)
_TEMPLATE_SHRINK = 2  # the 1 mm template is used at 2 mm
_SUBJECT_SPACING_MM = 1.8  # the subject is shrunk to about this before registration
_START_SCALES = (0.9, 1.0, 1.1)  # template-to-subject head sizes tried at the coarse level
_COARSE_SHRINK = 4  # the start search runs at 8 mm (the 2 mm template shrunk 4 times; the subject only smoothed)
_SMOOTHING_MM = {4: 2.0, 2: 1.0, 1: 0.0}  # Gaussian sigma before shrinking by each factor
# The refinement: at 4 mm on a fifth of the brain's voxels. On tuning phantoms 5000-5011 (46 CMBs) the whole
# registration placed every CMB in its true MARS region and side, as the former one (4 then 2 mm, on a tenth, all
# gradient filters on) did, with a smaller error at the CMBs (median 0.8 mm, max 1.3, against 0.9 and 1.9), for
# 1.4 instead of 2.3 CPU-seconds.
_REFINE_SHRINK, _REFINE_SAMPLING, _REFINE_ITERATIONS = (2,), 0.2, 100
_CSF_LEVEL, _GM_LEVEL = 0.33, 0.66  # template image levels (white matter = 1)
_QUALITY_DEPTH_MM = 8.0  # the tissue-contrast check looks this far inside the template brain's surface
_BIAS_SIGMA_MM = 30.0  # the check divides out intensity trends this smooth: bias fields vary over decimetres
# Gaussian sigma applied to the subject before that check: the coarse search's, so one smoothed subject serves both.
_QUALITY_SMOOTHING_MM = _SMOOTHING_MM[_COARSE_SHRINK]


@dataclass(frozen=True)
class MniRegistration:
    """A checked subject-to-MNI affine.

    ``transform`` maps subject physical points (LPS, as SimpleITK) to MNI points (LPS);
    ``tissue_contrast`` and ``coverage`` are the quality figures described in the module docstring.
    """

    transform: sitk.Transform
    tissue_contrast: float
    coverage: float
    metric: float
    seconds: float

    def subject_ras_to_mni_ras(self, ras: tuple[float, float, float]) -> tuple[float, float, float]:
        """Map one subject RAS point (mm) to MNI RAS (mm)."""
        mni = self.transform.TransformPoint(ras_to_lps(ras).tolist())
        return tuple(float(v) for v in lps_to_ras(mni))


@dataclass(frozen=True)
class _Template:
    image: sitk.Image  # tissue-class image on a 2 mm grid
    coarse: sitk.Image  # the same smoothed and shrunk to 8 mm, once, for the starting-pose search
    mask: sitk.Image  # dilated brain: where the metric samples
    tissue: np.ndarray  # [k, j, i] classes inside the brain: 0 outside, 1 CSF, 2 GM, 3 WM
    deep_tissue: np.ndarray  # the same, 0 within _QUALITY_DEPTH_MM of the brain surface
    centre: np.ndarray  # brain centre of mass, LPS


def preload_template() -> None:
    """Load the MNI template now (~5 s, once per process) so the first registration is not slowed by it."""
    _template()


@lru_cache(maxsize=1)
def _template() -> _Template:
    atlas = load_mni_atlas()
    # BinShrink averages 2x2x2 blocks: a cheap, alias-free 2 mm template.
    gm, wm, brain = (sitk.BinShrink(sitk.Cast(getattr(atlas, name), sitk.sitkFloat32), [_TEMPLATE_SHRINK] * 3)
                     for name in ("gm", "wm", "brain"))
    brain = brain > 0.5
    # Intracranial space: the brain plus a 2 mm CSF layer. The template image is a tissue-class image
    # (CSF, grey, white matter at three levels, zero outside) rather than the T1: the T1 shows CSF as dark as
    # the background, which lets the brain edge lock onto the dark skull of an SWI instead of its bright CSF.
    intracranial = sitk.BinaryDilate(brain, [1, 1, 1])
    csf = sitk.Cast(intracranial, sitk.sitkFloat32) * sitk.Clamp(1.0 - gm - wm, lowerBound=0.0, upperBound=1.0)
    image = sitk.Cast(csf * _CSF_LEVEL + gm * _GM_LEVEL + wm, sitk.sitkFloat32)
    gm, wm = sitk.GetArrayFromImage(gm), sitk.GetArrayFromImage(wm)
    tissue = np.where(gm > wm, 2, 3)
    tissue[gm + wm < 0.4] = 1
    tissue[sitk.GetArrayViewFromImage(brain) == 0] = 0
    depth = int(round(_QUALITY_DEPTH_MM / (_TEMPLATE_SHRINK * atlas.t1.GetSpacing()[0])))
    deep = sitk.GetArrayViewFromImage(sitk.BinaryErode(brain, [depth] * 3)) > 0
    return _Template(image, _coarse(image), sitk.BinaryDilate(intracranial, [3, 3, 3]), tissue.astype(np.uint8),
                     np.where(deep, tissue, 0).astype(np.uint8), _centre_of_mass(brain))


def _coarse(image: sitk.Image) -> sitk.Image:
    """``image`` smoothed as the registration pyramid's coarsest level would, then shrunk to it."""
    return sitk.Shrink(sitk.SmoothingRecursiveGaussian(image, _SMOOTHING_MM[_COARSE_SHRINK]), [_COARSE_SHRINK] * 3)


def _centre_of_mass(mask: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask > 0, sitk.sitkUInt8))
    return np.array(stats.GetCentroid(1))


def _prepare_subject(image: sitk.Image) -> tuple[sitk.Image, np.ndarray]:
    """Subject shrunk to ~2 mm, intensities clipped to their 1-99.5th percentiles, and its head's centre (LPS)."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise RegistrationError("registration needs a 3D scalar volume; pass the SWI magnitude image.")
    # Averaging blocks down to ~2 mm voxels both speeds the metric up and suppresses noise and veins.
    shrink = [max(1, int(_SUBJECT_SPACING_MM / s)) for s in image.GetSpacing()]
    image = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), shrink)
    values = sitk.GetArrayViewFromImage(image)
    low, high = np.percentile(values[np.isfinite(values)], [1, 99.5])
    if not high > low:
        raise RegistrationError("the volume is blank (no intensity range); it cannot be a head/brain SWI.")
    image = sitk.Clamp(image, sitk.sitkFloat32, float(low), float(high))
    head = sitk.OtsuThreshold(image, 0, 1)
    if sitk.GetArrayViewFromImage(head).sum() == 0:
        raise RegistrationError("no foreground found in the volume; it does not look like a head/brain SWI.")
    return image, _centre_of_mass(head)


def _method(fixed: _Template, shrink: list[int], sampling: float, iterations: int = 100,
            moving_gradient_filter: bool = False) -> sitk.ImageRegistrationMethod:
    """Mattes mutual information inside the template's mask, gradient descent, the given pyramid levels.

    ``moving_gradient_filter`` takes the moving image's gradients from a smoothed gradient image rather than
    central differences at each sample: the coarse search needs it (on a template posed with flat grey/white
    contrast it missed by 8 mm without it); the refinement does not.
    """
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, seed=1)
    method.SetMetricFixedMask(fixed.mask)
    # Image gradients at the sampled points only where the search allows it: the gradient filters process the
    # whole images on every run, which cost more than all the iterations of the refinement.
    method.MetricUseFixedImageGradientFilterOff()
    if not moving_gradient_filter:
        method.MetricUseMovingImageGradientFilterOff()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=0.01, numberOfIterations=iterations, relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(shrink)
    method.SetSmoothingSigmasPerLevel([_SMOOTHING_MM[s] for s in shrink])
    return method


def _execute(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image,
             initial: sitk.AffineTransform) -> tuple[sitk.AffineTransform, float]:
    method.SetInitialTransform(initial, inPlace=False)
    try:
        result = method.Execute(fixed, moving)
    except RuntimeError as exc:
        raise RegistrationError(
            f"registration to MNI space did not converge ({str(exc).strip().splitlines()[-1]}). "
            "Check that the volume is a whole-brain SWI with correct orientation in its header."
        ) from exc
    return sitk.AffineTransform(sitk.CompositeTransform(result).GetNthTransform(0)), method.GetMetricValue()


def _register(fixed: _Template, moving: sitk.Image, smoothed: sitk.Image,
              centre_shift: np.ndarray) -> tuple[sitk.AffineTransform, float]:
    """Template-to-subject affine and its final metric; ``smoothed`` is ``moving`` smoothed by
    :data:`_QUALITY_SMOOTHING_MM`, the coarse search's moving image.

    Mutual information has a false optimum where the template brain spreads over the subject's dark skull,
    more likely the farther the starting head size is from the truth; so a coarse (8 mm) registration
    starts from each of :data:`_START_SCALES`, each is refined at 4 mm and the best refined one is kept. The
    coarse metric alone cannot choose: at 8 mm the false optimum often scores best (on 5 OOD-matrix subjects
    whose MARS failed it won every time, and its refinement then scored far worse, -0.39 to -0.46 against
    -0.55 to -0.83). The 8 mm images are made once, not once per start (the pyramid's smoothing costs as much
    as a coarse run's iterations).
    """
    # The moving image is smoothed, not shrunk, as the pyramid does with it: shrunk to 3.6 mm, 3 of 12 tuning
    # phantoms failed the tissue-contrast check.
    refined = []
    for scale in _START_SCALES:
        initial = sitk.AffineTransform(3)
        initial.SetCenter(fixed.centre.tolist())
        initial.SetTranslation(centre_shift.tolist())
        initial.Scale(scale)
        coarse, _ = _execute(_method(fixed, [1], 0.5, moving_gradient_filter=True), fixed.coarse, smoothed, initial)
        refined.append(_execute(_method(fixed, list(_REFINE_SHRINK), _REFINE_SAMPLING, _REFINE_ITERATIONS),
                                fixed.image, moving, coarse))
    return min(refined, key=lambda candidate: candidate[1])


def _check_geometry(affine: sitk.AffineTransform) -> None:
    matrix = np.array(affine.GetMatrix()).reshape(3, 3)
    if not np.isfinite(matrix).all() or np.linalg.det(matrix) <= 0:
        raise RegistrationError("registration produced a degenerate transform; the volume does not look like a brain.")
    # Polar decomposition: rotation U and stretch P (matrix = U @ P).
    u, s, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    tilt = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
    if s.min() < SCALE_RANGE[0] or s.max() > SCALE_RANGE[1] or tilt > MAX_TILT_DEG:
        raise RegistrationError(
            f"registration gave an implausible head pose (scales {np.round(s, 2).tolist()}, rotation {tilt:.0f} deg); "
            "the volume does not look like a head/brain SWI, or its header orientation is wrong."
        )


def _brain_level(warped: np.ndarray, inside: np.ndarray, spacing_mm: float) -> np.ndarray:
    """A :data:`_BIAS_SIGMA_MM` Gaussian average of the subject over the template brain (``inside``, where seen):
    a coil's bias field, which tissue classes cannot explain and which would otherwise dilute the ratio."""
    seen = inside & np.isfinite(warped)
    sigma = _BIAS_SIGMA_MM / spacing_mm
    total = ndimage.gaussian_filter(np.where(seen, warped, 0.0), sigma)
    weight = ndimage.gaussian_filter(seen.astype(float), sigma)
    return total / np.maximum(weight, 1e-3)


def _quality(fixed: _Template, smoothed: sitk.Image, to_subject: sitk.Transform) -> tuple[float, float]:
    """Correlation ratio of subject intensity given template tissue class, and brain coverage (see module doc), on
    the subject smoothed by :data:`_QUALITY_SMOOTHING_MM`."""
    # Resampling with NaN outside lets coverage count template brain voxels the subject's field of view misses.
    warped = sitk.GetArrayFromImage(sitk.Resample(smoothed, fixed.image, to_subject, sitk.sitkLinear, float("nan")))
    inside = fixed.tissue > 0
    coverage = (inside & np.isfinite(warped)).sum() / inside.sum()
    seen = (fixed.deep_tissue > 0) & np.isfinite(warped)
    flat = warped / _brain_level(warped, inside, fixed.image.GetSpacing()[0])
    values, classes = flat[seen], fixed.deep_tissue[seen]
    if values.size < 100 or values.var() == 0:
        return 0.0, float(coverage)
    class_means = np.bincount(classes, values) / np.maximum(np.bincount(classes), 1)
    explained = np.mean((class_means[classes] - values.mean()) ** 2)
    return float(explained / values.var()), float(coverage)


def register_to_mni(image: sitk.Image) -> MniRegistration:
    """Register ``image`` (a head or brain SWI, any grid) affinely to MNI152; raise :class:`RegistrationError` on failure."""
    start = time.perf_counter()
    moving, head_centre = _prepare_subject(image)  # first: a blank or 2D input fails before the atlas loads
    fixed = _template()
    smoothed = sitk.SmoothingRecursiveGaussian(moving, _QUALITY_SMOOTHING_MM)
    affine, metric = _register(fixed, moving, smoothed, head_centre - fixed.centre)
    _check_geometry(affine)
    contrast, coverage = _quality(fixed, smoothed, affine)
    if coverage < MIN_COVERAGE:
        raise RegistrationError(
            f"after registration the volume covers only {coverage:.0%} of the brain; MARS needs a whole-brain SWI."
        )
    if contrast < MIN_TISSUE_CONTRAST:
        raise RegistrationError(
            f"registration to MNI space failed: the volume does not look like a head/brain SWI (tissue contrast "
            f"{contrast:.2f} < {MIN_TISSUE_CONTRAST}). Check the input is the SWI magnitude of a whole brain."
        )
    return MniRegistration(affine.GetInverse(), contrast, coverage, metric, time.perf_counter() - start)
