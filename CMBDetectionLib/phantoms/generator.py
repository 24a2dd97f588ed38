"""Realistic synthetic SWI volumes with known microbleeds: the test data, demo input and training set.

One subject = the MNI152 2009 anatomy (:mod:`phantom_anatomy`) with SWI contrast (modest grey/white
contrast, bright CSF, dark iron-rich nuclei, skull and scalp, dropout near the frontal sinus and skull
base), veins (:mod:`phantom_veins`), calcifications and 0-15 CMBs (:mod:`phantom_lesions`), then scanned
(:mod:`phantom_acquisition`): random pose, axial slab, blur, bias field and Rician noise.

What is drawn, and from which ranges, is a :class:`PhantomSettings` (:mod:`phantoms.settings`): its defaults are
the generator the shipped models learned, the wide ``RANDOMISED`` preset serves domain-randomised training and
:mod:`phantoms.ood_sets` shifts one range at a time. Draws the original generator never made (resolution, tilt,
warp, texture, shapes...) come from a second stream, ``default_rng([seed, 1])``, so default settings reproduce
every earlier subject exactly.

Ground truth is exact by construction: each CMB's region, category and side come from where it was put
(MARS regions of :mod:`mars_regions`; side is anatomical, MNI x > 0 = right); the CMB mask holds one
6-connected component per listed CMB, centred on its ``centre_ras``.

Seed policy (a subject is fully determined by its seed, via ``numpy.random.default_rng(seed)``):
tests use seeds < 1000, training 1000-8999, held-out evaluation 9000-19999, the out-of-distribution matrix
20000-29999 (:mod:`phantoms.ood_sets`; never for training or tuning), and the shipped demo
``CMBDetectionLib/data/demo_*`` is :data:`DEMO_SEED` (424308: the first seed from 424242 on with 5-12
CMBs in all three categories whose noisy volume compresses under 5 MB).

>>> subject = generate_subject(7, size=128, spacing=1.8)     # doctest: +SKIP
>>> subject = generate_subject(1000, settings=settings.RANDOMISED)     # doctest: +SKIP
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

from CMBDetectionLib.imageio.volumes import index_to_ras, lps_to_ras, ras_to_index, write_image
from CMBDetectionLib.phantoms import acquisition as acq
from CMBDetectionLib.phantoms.anatomy import AIR, HEAD_TISSUE, LAYER_MM, PhantomAnatomy, load_anatomy
from CMBDetectionLib.phantoms.artefacts import dropout_loss, skull_base_spots, texture_field
from CMBDetectionLib.phantoms.lesions import PlacedBlob, cmb_label_map, place_calcifications, place_cmbs, render_spheres
from CMBDetectionLib.phantoms.settings import DEFAULT, PhantomSettings
from CMBDetectionLib.phantoms.veins import STEP_MM, generate_veins, render_tubes
from CMBDetectionLib.phantoms.warp import RandomWarp

DEMO_SEED = 424308  # first seed from 424242 with 5-12 CMBs in all three categories and a < 5 MB volume
VEIN_MASK_LOSS = 0.3  # signal loss above which a voxel counts as vein in ``vein_mask``
EXTRA_STREAM = 1  # second random stream: draws the original generator never made
SPOT_CLEARANCE_MM = 6.0  # skull-base spots keep this far from CMBs (MNI mm)
DIPOLE_DEPOSIT_FRACTION = 0.85  # deposit radius / drawn radius: blooming at 3 T, TE 20 ms restores about the drawn size


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
    params: dict[str, float | str] = field(default_factory=dict)  # snr, scale, gm_wm_ratio, geometry drawn...


@dataclass(frozen=True)
class _Contrast:
    gm: float
    wm: float
    csf: float
    iron: float
    skull: tuple[float, float, float]  # inner table end, diploe end, outer table end (mm outside the brain case)


def _random_contrast(rng: np.random.Generator, settings: PhantomSettings) -> _Contrast:
    wm = 0.5
    # Modest grey/white contrast; on SWI grey matter is usually, not always, the brighter.
    gm = wm * (1 + (1 if rng.random() < settings.p_gm_brighter else -1) * rng.uniform(*settings.gm_wm_contrast))
    inner = rng.uniform(1.5, 2.5)
    diploe = inner + rng.uniform(2.0, 4.0)
    return _Contrast(gm, wm, rng.uniform(*settings.csf), rng.uniform(*settings.iron),
                     (inner, diploe, diploe + rng.uniform(1.5, 2.5)))


def _draw(rng: np.random.Generator, span: tuple[float, float]) -> float:
    """A value from ``span``; a fixed span draws nothing."""
    return float(span[0]) if span[0] == span[1] else float(rng.uniform(*span))


def _layer_lut(c: _Contrast, rng: np.random.Generator) -> np.ndarray:
    """Signal per :attr:`PhantomAnatomy.head_layer` code: skull tables, diploe, scalp, face/neck, air."""
    inner, diploe, outer = c.skull
    d = np.arange(256) * LAYER_MM
    lut = np.select([d <= inner, d <= diploe, d <= outer], [0.04, rng.uniform(0.12, 0.25), 0.04], rng.uniform(0.45, 0.65))
    lut[HEAD_TISSUE] = rng.uniform(0.3, 0.4)  # muscle
    lut[AIR] = 0.0
    return lut.astype(np.float32)


def _mni_signal(anatomy: PhantomAnatomy, c: _Contrast, rng: np.random.Generator, scan: dict[str, float | str],
                extra: np.random.Generator) -> np.ndarray:
    """Noise-free SWI magnitude on the MNI grid (brain with the drawn ``texture``, head layers, air-tissue dropout
    of ``air_extent``, ``gamma``: entries of ``scan``, :func:`_acquisition`)."""
    signal = anatomy.gm * np.float32(c.gm)
    signal += anatomy.wm * np.float32(c.wm)
    if scan["texture"] > 0:
        signal *= texture_field(signal.shape, scan["texture"], extra)
    nuclei = _bounding_box(anatomy.iron > 0.01)
    signal[nuclei] *= 1 - np.float32(c.iron) * anatomy.iron[nuclei]
    signal += anatomy.csf * np.float32(c.csf)
    outside = anatomy.head_layer > 0
    signal[outside] = _layer_lut(c, rng)[anatomy.head_layer[outside]]
    signal *= 1 - dropout_loss(anatomy, rng, scan["air_extent"])
    if scan["gamma"] != 1.0:
        np.power(signal, np.float32(scan["gamma"]), out=signal)
    return signal


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    return ndimage.find_objects(mask.astype(np.uint8))[0]


@dataclass(frozen=True)
class _Placement:
    """Where MNI anatomy lands on the subject grid: through the (optional) warp, then the pose."""

    grid: sitk.Image
    pose: acq.Pose
    warp: RandomWarp | None

    def to_kji(self, ras_mni: np.ndarray) -> np.ndarray:
        """MNI RAS points to continuous ``[k, j, i]`` indices of the subject grid."""
        ras = ras_mni if self.warp is None else self.warp.unwarp_ras(ras_mni)
        return ras_to_index(self.grid, lps_to_ras(self.pose.mni_ras_to_subject_lps(ras)))[:, ::-1]

    def in_fov(self, ras_mni: np.ndarray, margin_mm: float) -> np.ndarray:
        """Which MNI points image at least ``margin_mm`` inside the grid."""
        kji = self.to_kji(ras_mni)
        margin = margin_mm / np.array(self.grid.GetSpacing())[::-1]
        return np.all((kji >= margin) & (kji <= np.array(self.grid.GetSize())[::-1] - 1 - margin), axis=1)


def _image(array: np.ndarray, grid: sitk.Image, pixel_type: int) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return sitk.Cast(image, pixel_type)


def _snap(kji: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Move a centre to near a voxel centre so that its voxelised sphere is symmetric (mask centroid = centre)."""
    return np.rint(kji) + rng.uniform(-0.15, 0.15, 3) * np.array([0.5, 1.0, 1.0])


def _acquisition(seed: int, settings: PhantomSettings, extra: np.random.Generator) -> dict[str, float | str]:
    """This subject's grid and scan parameters drawn from ``settings`` (the voxel order cycles with the seed)."""
    spacing, thickness = _draw(extra, settings.in_plane_mm), _draw(extra, settings.slice_mm)
    if settings.n_slices is None:
        n_slices = settings.slice_count(thickness, _draw(extra, settings.slab_mm))
    else:
        n_slices = int(extra.integers(settings.n_slices[0], settings.n_slices[1] + 1))
    return {
        "in_plane_mm": spacing, "slice_mm": thickness, "size": settings.grid_size(spacing), "n_slices": n_slices,
        "tilt_deg": _draw(extra, settings.tilt_deg),
        "voxel_order": settings.voxel_orders[seed % len(settings.voxel_orders)],
        "slab_fraction": float(extra.uniform()) if settings.slab_position == "random" else -1.0,
        "warp_mm": _draw(extra, settings.warp_mm), "texture": _draw(extra, settings.texture),
        "gamma": _draw(extra, settings.gamma), "air_extent": _draw(extra, settings.air_artefact_extent),
        "bias_strength": _draw(extra, settings.bias_strength), "vein_density": _draw(extra, settings.vein_density),
        "skull_base_spots": int(extra.integers(settings.skull_base_spots[0], settings.skull_base_spots[1] + 1)),
    }


def _subject_grid(anatomy: PhantomAnatomy, pose: acq.Pose, warp: RandomWarp | None, scan: dict,
                  rng: np.random.Generator, extra: np.random.Generator) -> sitk.Image:
    brain_pts = anatomy.index_to_ras(np.argwhere(anatomy.brain[::3, ::3, ::3]) * 3)
    if warp is not None:
        brain_pts = warp.unwarp_ras(brain_pts)
    frame = acq.tilt_frame(scan["tilt_deg"], extra) if scan["tilt_deg"] > 0 else None
    fraction = scan["slab_fraction"] if scan["slab_fraction"] >= 0 else None
    return acq.subject_grid(brain_pts, pose, scan["size"], scan["in_plane_mm"], scan["slice_mm"], scan["n_slices"], rng,
                            frame, scan["voxel_order"], fraction)


def generate_subject(
    seed: int, size: int | None = None, spacing: float | None = None, slice_thickness: float | None = None,
    n_slices: int | None = None, settings: PhantomSettings | None = None,
) -> PhantomSubject:
    """Generate one phantom subject; the same arguments always give the same arrays.

    ``settings`` (default: :data:`settings.DEFAULT`, 256 x 256 x 70 at 0.9 x 0.9 x 2 mm) say what is drawn;
    ``size``, ``spacing``, ``slice_thickness`` and ``n_slices``, when given, fix the grid
    (:meth:`PhantomSettings.with_grid`).
    """
    settings = (settings or DEFAULT).with_grid(size, spacing, slice_thickness, n_slices)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, EXTRA_STREAM])
    anatomy = load_anatomy()
    timings["anatomy"] = time.perf_counter() - clock
    contrast = _random_contrast(rng, settings)
    pose = acq.random_pose(rng, settings.head_rotation_deg, settings.head_scale)
    scan = _acquisition(seed, settings, extra)
    _check_matrix(scan["size"], scan["n_slices"])
    warp = RandomWarp.draw(anatomy.reference, scan["warp_mm"], extra) if scan["warp_mm"] > 0 else None
    grid = _subject_grid(anatomy, pose, warp, scan, rng, extra)
    place = _Placement(grid, pose, warp)
    spacing_kji = np.array(grid.GetSpacing())[::-1]
    shape = tuple(int(n) for n in grid.GetSize()[::-1])

    veins = generate_veins(anatomy, rng, scan["vein_density"])
    calcs = place_calcifications(anatomy, rng)
    cmbs = place_cmbs(anatomy, rng, veins, calcs, place.in_fov, pose.scale, settings, extra,
                      cluster_gap_mm=max(1.0, 1.2 * float(spacing_kji.max())))
    spots = _clear_of(skull_base_spots(anatomy, extra, scan["skull_base_spots"]), cmbs)
    timings["layout"] = time.perf_counter() - clock

    warp_tf = None if warp is None else warp.transform()
    image = acq.resample(_mni_signal(anatomy, contrast, rng, scan, extra), anatomy.reference, grid, pose, warp=warp_tf)
    brain = acq.resample(anatomy.brain, anatomy.reference, grid, pose, linear=False, warp=warp_tf) > 0.5
    timings["resample"] = time.perf_counter() - clock

    vein_loss = render_tubes(place.to_kji(veins.points), veins.radius * pose.scale, veins.contrast, shape,
                             spacing_kji, STEP_MM * pose.scale)
    image *= 1 - np.clip(vein_loss, 0, 0.95)
    calc_cores = render_spheres(image, place.to_kji(np.array([b.centre_mni for b in calcs])),
                                [b.radius_mm * pose.scale for b in calcs], [b.depth for b in calcs], spacing_kji)
    if spots:
        render_spheres(image, place.to_kji(np.array([b.centre_mni for b in spots])),
                       [b.radius_mm * pose.scale for b in spots], [b.depth for b in spots], spacing_kji)
    centres = np.array([_snap(place.to_kji(b.centre_mni)[0], rng) for b in cmbs]).reshape(-1, 3)
    image, cmb_labels = _render_cmbs(image, grid, centres, cmbs, settings, extra)
    timings["lesions"] = time.perf_counter() - clock

    image, snr = _scan(image, brain, spacing_kji, rng, settings, scan["bias_strength"])
    timings["total"] = time.perf_counter() - clock
    kept = [n for n in range(len(cmbs)) if (cmb_labels == n + 1).any()]  # a faint dipole lesion may have no voxel
    return PhantomSubject(
        image=_image(image, grid, sitk.sitkInt16),
        cmb_mask=_image((cmb_labels > 0).astype(np.uint8), grid, sitk.sitkUInt8),
        brain_mask=_image(brain.astype(np.uint8), grid, sitk.sitkUInt8),
        cmbs=[_truth(cmbs[n], centres[n], grid, _diameter_mm(cmbs[n], cmb_labels == n + 1, spacing_kji, settings))
              for n in kept],
        seed=seed,
        vein_mask=_image((vein_loss > VEIN_MASK_LOSS).astype(np.uint8), grid, sitk.sitkUInt8),
        calcification_mask=_image((cmb_label_map(shape, calc_cores) > 0).astype(np.uint8), grid, sitk.sitkUInt8),
        timings=timings,
        params={"snr": snr, "scale": pose.scale, "gm_wm_ratio": contrast.gm / contrast.wm,
                **{k: v for k, v in scan.items() if k != "slab_fraction"}},
    )


def _clear_of(spots: list[PlacedBlob], cmbs: list[PlacedBlob]) -> list[PlacedBlob]:
    """The skull-base spots at least ``SPOT_CLEARANCE_MM`` from every CMB (a mimic must not hide a lesion)."""
    return [s for s in spots if all(np.linalg.norm(s.centre_mni - c.centre_mni) >= SPOT_CLEARANCE_MM for c in cmbs)]


def _render_cmbs(
    image: np.ndarray, grid: sitk.Image, centres: np.ndarray, cmbs: list[PlacedBlob], settings: PhantomSettings,
    extra: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the CMBs with the settings' renderer; returns the image and the CMB label map (1..n, 0 elsewhere)."""
    spacing_kji = np.array(grid.GetSpacing())[::-1]
    if settings.lesion_renderer == "dipole":
        from CMBDetectionLib.phantoms.dipole_lesions import render_dipole_lesions

        chi = [_draw(extra, settings.dipole_chi_ppm) for _ in cmbs]
        return render_dipole_lesions(image, spacing_kji, grid.GetDirection(), centres,
                                     [b.radius_mm * DIPOLE_DEPOSIT_FRACTION for b in cmbs], chi,
                                     b0_tesla=settings.b0_tesla, te_ms=settings.te_ms)
    cores = render_spheres(image, centres, [b.radius_mm for b in cmbs], [b.depth for b in cmbs], spacing_kji,
                           [b.shape for b in cmbs])
    return image, cmb_label_map(image.shape, cores)


def _diameter_mm(blob: PlacedBlob, mask: np.ndarray, spacing_kji: np.ndarray, settings: PhantomSettings) -> float:
    """The drawn diameter of a sphere; for other shapes and renderers, that of the sphere of the mask's volume."""
    if settings.lesion_renderer == "sphere" and blob.shape is None:
        return 2 * blob.radius_mm
    return float((6 * mask.sum() * np.prod(spacing_kji) / np.pi) ** (1 / 3))


def _scan(
    image: np.ndarray, brain: np.ndarray, spacing_kji: np.ndarray, rng: np.random.Generator, settings: PhantomSettings,
    bias_strength: float,
) -> tuple[np.ndarray, float]:
    """Blur, bias field, Rician noise (SNR in the settings' range, in the brain) and int16 scaling; returns the
    image and its SNR."""
    image = acq.blur(image, rng, settings.blur_voxels) * acq.bias_field(image.shape, spacing_kji, rng, bias_strength)
    reference = float(np.median(image[brain])) if brain.any() else float(image.max())
    snr = rng.uniform(*settings.snr)
    image = acq.rician(image, reference / snr, rng)
    gain = rng.uniform(100, 800) / reference  # brain median 100-800, as on scanner exports
    return np.clip(np.rint(image * gain), 0, np.iinfo(np.int16).max).astype(np.int16), snr


def _truth(blob: PlacedBlob, centre_kji: np.ndarray, grid: sitk.Image, diameter_mm: float) -> PhantomCMB:
    ras = index_to_ras(grid, centre_kji[::-1])
    return PhantomCMB(
        centre_ras=tuple(round(float(v), 3) for v in ras),
        diameter_mm=round(diameter_mm, 3),
        region=blob.region,
        category=blob.category,
        side=blob.side,
        centre_mni=tuple(round(float(v), 3) for v in blob.centre_mni),
    )


def _check_matrix(size: int, n_slices: int) -> None:
    """Refuse a matrix too small for a head; voxel sizes are checked by ``PhantomSettings``, but the matrix follows
    from the field of view and slab they allow."""
    if size < 32 or n_slices < 8:
        raise ValueError(f"grid {size}x{size}x{n_slices} is too small; use a size of at least 32 and at least 8 slices.")


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
