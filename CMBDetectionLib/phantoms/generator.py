"""Realistic synthetic SWI volumes with known microbleeds: the test data, demo input and training set.

One subject = the MNI152 2009 anatomy (:mod:`phantom_anatomy`) with SWI contrast (modest grey/white
contrast, bright CSF, dark iron-rich nuclei, skull and scalp, dropout near the frontal sinus and skull
base), veins (:mod:`phantom_veins`), calcifications and 0-15 CMBs (:mod:`phantom_lesions`), then scanned
(:mod:`phantom_acquisition`): random pose, axial slab, blur, bias field and Rician noise.

Ground truth is exact by construction: each CMB's region, category and side come from where it was put
(MARS regions of :mod:`mars_regions`; side is anatomical, MNI x > 0 = right); the CMB mask holds one
6-connected component per listed CMB, centred on its ``centre_ras``.

Seed policy (a subject is fully determined by its seed, via ``numpy.random.default_rng(seed)``):
tests use seeds < 1000, training 1000-8999, held-out evaluation 9000 and up, and the shipped demo
``CMBDetectionLib/data/demo_*`` is :data:`DEMO_SEED` (424308: the first seed from 424242 on with 5-12
CMBs in all three categories whose noisy volume compresses under 5 MB).

>>> subject = generate_subject(7, size=128, spacing=1.8)     # doctest: +SKIP
>>> paths = write_subject(subject, "out")                     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.phantoms import acquisition as acq
from CMBDetectionLib.phantoms.anatomy import AIR, HEAD_TISSUE, LAYER_MM, PhantomAnatomy, load_anatomy
from CMBDetectionLib.phantoms.lesions import PlacedBlob, cmb_label_map, place_calcifications, place_cmbs, render_spheres
from CMBDetectionLib.phantoms.veins import STEP_MM, generate_veins, render_tubes
from CMBDetectionLib.imageio.volumes import index_to_ras, write_image

DEMO_SEED = 424308  # first seed from 424242 with 5-12 CMBs in all three categories and a < 5 MB volume
VEIN_MASK_LOSS = 0.3  # signal loss above which a voxel counts as vein in ``vein_mask``


@dataclass(frozen=True)
class PhantomCMB:
    """One ground-truth microbleed. ``centre_ras`` is on the subject grid (RAS mm), ``centre_mni`` where it was placed."""

    centre_ras: tuple[float, float, float]
    diameter_mm: float
    region: str
    category: str
    side: str
    centre_mni: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass
class PhantomSubject:
    """A generated subject; all images share one grid. ``vein_mask`` and ``calcification_mask`` mark the mimics."""

    image: sitk.Image  # int16 SWI magnitude
    cmb_mask: sitk.Image  # uint8 0/1
    brain_mask: sitk.Image  # uint8 0/1
    cmbs: list[PhantomCMB]
    seed: int
    vein_mask: sitk.Image | None = None
    calcification_mask: sitk.Image | None = None
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)  # snr, scale, gm_wm_ratio


@dataclass(frozen=True)
class _Contrast:
    gm: float
    wm: float
    csf: float
    iron: float
    skull: tuple[float, float, float]  # inner table end, diploe end, outer table end (mm outside the brain case)


def _random_contrast(rng: np.random.Generator) -> _Contrast:
    wm = 0.5
    # Modest grey/white contrast; on SWI grey matter is usually, not always, the brighter.
    gm = wm * (1 + (1 if rng.random() < 0.75 else -1) * rng.uniform(0.05, 0.2))
    inner = rng.uniform(1.5, 2.5)
    diploe = inner + rng.uniform(2.0, 4.0)
    return _Contrast(gm, wm, rng.uniform(0.8, 1.0), rng.uniform(0.35, 0.6), (inner, diploe, diploe + rng.uniform(1.5, 2.5)))


def _gauss(coord: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((coord - centre) / sigma) ** 2)


def _layer_lut(c: _Contrast, rng: np.random.Generator) -> np.ndarray:
    """Signal per :attr:`PhantomAnatomy.head_layer` code: skull tables, diploe, scalp, face/neck, air."""
    inner, diploe, outer = c.skull
    d = np.arange(256) * LAYER_MM
    lut = np.select([d <= inner, d <= diploe, d <= outer], [0.04, rng.uniform(0.12, 0.25), 0.04], rng.uniform(0.45, 0.65))
    lut[HEAD_TISSUE] = rng.uniform(0.3, 0.4)  # muscle
    lut[AIR] = 0.0
    return lut.astype(np.float32)


def _mni_signal(anatomy: PhantomAnatomy, c: _Contrast, rng: np.random.Generator) -> np.ndarray:
    """Noise-free SWI magnitude on the MNI grid (brain, head layers, air-tissue dropout)."""
    signal = anatomy.gm * np.float32(c.gm)
    signal += anatomy.wm * np.float32(c.wm)
    nuclei = _bounding_box(anatomy.iron > 0.01)
    signal[nuclei] *= 1 - np.float32(c.iron) * anatomy.iron[nuclei]
    signal += anatomy.csf * np.float32(c.csf)
    outside = anatomy.head_layer > 0
    signal[outside] = _layer_lut(c, rng)[anatomy.head_layer[outside]]
    # Susceptibility dropout from the sinuses and mastoid air (anatomical positions, MNI mm).
    x, y, z = anatomy.ras_axes()
    loss = rng.uniform(0.6, 0.9) * _gauss(x, 0, 14) * _gauss(y, 48, 12) * _gauss(z, -32, 10)
    for sign in (1.0, -1.0):
        loss = loss + rng.uniform(0.5, 0.85) * _gauss(x, 52 * sign, 11) * _gauss(y, -18, 12) * _gauss(z, -42, 10)
    signal *= 1 - np.clip(loss, 0, 0.95).astype(np.float32)
    return signal


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    return ndimage.find_objects(mask.astype(np.uint8))[0]


def _to_grid(grid: sitk.Image, pose: acq.Pose, ras_mni: np.ndarray) -> np.ndarray:
    """MNI RAS points to continuous ``[k, j, i]`` indices of the subject grid."""
    return acq.subject_lps_to_kji(grid, pose.mni_ras_to_subject_lps(ras_mni))


def _image(array: np.ndarray, grid: sitk.Image, pixel_type: int) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return sitk.Cast(image, pixel_type)


def _fov_test(grid: sitk.Image, pose: acq.Pose):
    size_kji = np.array(grid.GetSize())[::-1]
    spacing_kji = np.array(grid.GetSpacing())[::-1]

    def in_fov(ras_mni: np.ndarray, margin_mm: float) -> np.ndarray:
        kji = _to_grid(grid, pose, ras_mni)
        margin = margin_mm / spacing_kji
        return np.all((kji >= margin) & (kji <= size_kji - 1 - margin), axis=1)

    return in_fov


def _snap(kji: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move a centre to near a voxel centre so that its voxelised sphere is symmetric (mask centroid = centre)."""
    return np.rint(kji) + rng.uniform(-0.15, 0.15, 3) * np.array([0.5, 1.0, 1.0])


def generate_subject(
    seed: int, size: int = 256, spacing: float = 0.9, slice_thickness: float = 2.0, n_slices: int = 70
) -> PhantomSubject:
    """Generate one phantom subject; the same arguments always give the same arrays."""
    _check_geometry(size, spacing, slice_thickness, n_slices)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    rng = np.random.default_rng(seed)
    anatomy = load_anatomy()
    timings["anatomy"] = time.perf_counter() - clock
    contrast = _random_contrast(rng)
    pose = acq.random_pose(rng)
    brain_pts = anatomy.index_to_ras(np.argwhere(anatomy.brain[::3, ::3, ::3]) * 3)
    grid = acq.subject_grid(brain_pts, pose, size, spacing, slice_thickness, n_slices, rng)
    spacing_kji = np.array(grid.GetSpacing())[::-1]
    shape = tuple(int(n) for n in grid.GetSize()[::-1])

    veins = generate_veins(anatomy, rng)
    calcs = place_calcifications(anatomy, rng)
    cmbs = place_cmbs(anatomy, rng, veins, calcs, _fov_test(grid, pose), pose.scale)
    timings["layout"] = time.perf_counter() - clock

    image = acq.resample(_mni_signal(anatomy, contrast, rng), anatomy.reference, grid, pose)
    brain = acq.resample(anatomy.brain, anatomy.reference, grid, pose, linear=False) > 0.5
    timings["resample"] = time.perf_counter() - clock

    vein_loss = render_tubes(_to_grid(grid, pose, veins.points), veins.radius * pose.scale, veins.contrast, shape,
                             spacing_kji, STEP_MM * pose.scale)
    image *= 1 - np.clip(vein_loss, 0, 0.95)
    calc_cores = render_spheres(image, _to_grid(grid, pose, np.array([b.centre_mni for b in calcs])),
                                [b.radius_mm * pose.scale for b in calcs], [b.depth for b in calcs], spacing_kji)
    centres = np.array([_snap(_to_grid(grid, pose, b.centre_mni)[0], rng) for b in cmbs]).reshape(-1, 3)
    cmb_cores = render_spheres(image, centres, [b.radius_mm for b in cmbs], [b.depth for b in cmbs], spacing_kji)
    timings["lesions"] = time.perf_counter() - clock

    image, snr = _scan(image, brain, spacing_kji, rng)
    timings["total"] = time.perf_counter() - clock
    return PhantomSubject(
        image=_image(image, grid, sitk.sitkInt16),
        cmb_mask=_image((cmb_label_map(shape, cmb_cores) > 0).astype(np.uint8), grid, sitk.sitkUInt8),
        brain_mask=_image(brain.astype(np.uint8), grid, sitk.sitkUInt8),
        cmbs=[_truth(b, c, grid) for b, c in zip(cmbs, centres)],
        seed=seed,
        vein_mask=_image((vein_loss > VEIN_MASK_LOSS).astype(np.uint8), grid, sitk.sitkUInt8),
        calcification_mask=_image((cmb_label_map(shape, calc_cores) > 0).astype(np.uint8), grid, sitk.sitkUInt8),
        timings=timings,
        params={"snr": snr, "scale": pose.scale, "gm_wm_ratio": contrast.gm / contrast.wm},
    )


def _scan(
    image: np.ndarray, brain: np.ndarray, spacing_kji: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Blur, bias field, Rician noise (SNR 12-40 in the brain) and int16 scaling; returns the image and its SNR."""
    image = acq.blur(image, spacing_kji, rng) * acq.bias_field(image.shape, spacing_kji, rng)
    reference = float(np.median(image[brain])) if brain.any() else float(image.max())
    snr = rng.uniform(12, 40)
    image = acq.rician(image, reference / snr, rng)
    gain = rng.uniform(100, 800) / reference  # brain median 100-800, as on scanner exports
    return np.clip(np.rint(image * gain), 0, np.iinfo(np.int16).max).astype(np.int16), snr


def _truth(blob: PlacedBlob, centre_kji: np.ndarray, grid: sitk.Image) -> PhantomCMB:
    ras = index_to_ras(grid, centre_kji[::-1])
    return PhantomCMB(
        centre_ras=tuple(round(float(v), 3) for v in ras),
        diameter_mm=round(2 * blob.radius_mm, 3),
        region=blob.region,
        category=blob.category,
        side=blob.side,
        centre_mni=tuple(round(float(v), 3) for v in blob.centre_mni),
    )


def _check_geometry(size: int, spacing: float, slice_thickness: float, n_slices: int) -> None:
    if size < 32 or n_slices < 8:
        raise ValueError(f"grid {size}x{size}x{n_slices} is too small; use a size of at least 32 and at least 8 slices.")
    if not (0.2 <= spacing <= 5.0 and 0.2 <= slice_thickness <= 10.0):
        raise ValueError(
            f"spacing {spacing} mm / slice thickness {slice_thickness} mm out of range; use 0.2-5 mm in-plane and 0.2-10 mm slices."
        )


def write_subject(
    subject: PhantomSubject, out_dir: str | os.PathLike, mimics: bool = False, stem: str | None = None
) -> dict[str, Path]:
    """Write ``{stem}_swi/_cmb/_brain.nii.gz`` and ``{stem}_cmbs.json`` (plus ``_veins``/``_calcifications``
    masks with ``mimics``); ``stem`` defaults to ``phantom_{seed:05d}``. Returns the paths by kind."""
    base = Path(out_dir) / (stem or f"phantom_{subject.seed:05d}")
    paths = {
        "swi": write_image(subject.image, f"{base}_swi.nii.gz"),
        "cmb": write_image(subject.cmb_mask, f"{base}_cmb.nii.gz"),
        "brain": write_image(subject.brain_mask, f"{base}_brain.nii.gz"),
    }
    if mimics:
        paths["veins"] = write_image(subject.vein_mask, f"{base}_veins.nii.gz")
        paths["calcifications"] = write_image(subject.calcification_mask, f"{base}_calcifications.nii.gz")
    paths["cmbs"] = Path(f"{base}_cmbs.json")
    paths["cmbs"].write_text(json.dumps([asdict(c) for c in subject.cmbs], indent=1))
    return paths
