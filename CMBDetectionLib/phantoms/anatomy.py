"""MNI-space anatomy behind the SWI phantom: tissue fractions, head layers, iron and MARS region labels.

Everything here is derived once from :func:`mni_atlas.load_mni_atlas` (1 mm template grid, arrays
``[k, j, i]``), cached in-process and, as ``.npz``, under ``settings.cache_dir()`` (``~/.cache/cmbdetection``;
``CMBDETECTION_CACHE`` overrides it) so that later processes skip the ~20 s of distance transforms.

Region labels are those of :mod:`mars_regions` (the map the detector reports with), split by side: each
labelled voxel holds ``region_code(region, side)``. Label 255 marks brain that no CMB may be placed in or
near: cortex whose MARS lobe is debatable (cingulate, limbic, fusiform, paracentral, rolandic) and the
midline. CMBs also keep clear of CSF (``tissue_depth``).

>>> anatomy = load_anatomy()                          # doctest: +SKIP
>>> anatomy.ras_to_index((0.0, -18.0, 10.0))          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.imageio.volumes import index_to_ras, ras_to_index
from CMBDetectionLib.mars.atlas import MniAtlas, load_mni_atlas
from CMBDetectionLib.mars.regions import REGION_CODES, REGION_MAP_VERSION, SIDES, load_region_map
from CMBDetectionLib.settings import cache_dir

log = logging.getLogger(__name__)

CACHE_VERSION = 8

LOBAR = ("frontal", "parietal", "temporal", "occipital", "insula")
DEEP = ("basal_ganglia", "thalamus", "internal_capsule", "external_capsule", "corpus_callosum", "deep_white_matter")
INFRATENTORIAL = ("brainstem", "cerebellum")
REGIONS = LOBAR + DEEP + INFRATENTORIAL
CATEGORY_OF = {**{r: "lobar" for r in LOBAR}, **{r: "deep" for r in DEEP}, **{r: "infratentorial" for r in INFRATENTORIAL}}
EXCLUDED = 255
LAYER_MM = 0.25  # head_layer resolution outside the intracranial space
SCALP_MM = 14.0  # skull + scalp thickness
HEAD_TISSUE = 254  # face, skull base and neck below the brain case
AIR = 255

# Cortex that MARS raters may put in either of two lobes: kept clear of CMBs so every truth label is unambiguous.
_DEBATABLE_CORTEX = (
    "Cingulum", "Hippocampus", "ParaHippocampal", "Amygdala", "Olfactory", "Fusiform", "Paracentral", "Rolandic",
)

# Iron-rich nuclei without AAL labels, as ellipsoids: RAS centre of the right one (mirrored to the left),
# semi-axes (mm) and relative iron load. Approximate MNI positions from standard atlases.
IRON_ELLIPSOIDS = (
    ((5.0, -19.0, -8.0), (3.0, 3.5, 3.5), 1.0),  # red nucleus
    ((11.0, -17.0, -12.0), (2.5, 5.5, 3.0), 0.9),  # substantia nigra
    ((15.0, -57.0, -34.0), (6.0, 7.0, 5.0), 0.8),  # dentate nucleus
)


def region_code(region: str, side: str) -> int:
    """Label value of ``region`` on ``side`` in :attr:`PhantomAnatomy.regions`.

    >>> region_code("frontal", "left"), region_code("cerebellum", "right")
    (1, 26)
    """
    return 1 + 2 * REGIONS.index(region) + SIDES.index(side)


@dataclass(frozen=True)
class PhantomAnatomy:
    """MNI-space arrays ``[k, j, i]`` on the template grid; distances in mm."""

    gm: np.ndarray  # grey-matter fraction (float16 on disk, float32 in memory)
    wm: np.ndarray  # white-matter fraction
    csf: np.ndarray  # CSF fraction (intracranial space not taken by tissue)
    brain: np.ndarray  # uint8 brain mask (ventricles included)
    head_layer: np.ndarray  # uint8: 0 intracranial; ceil(mm outside / LAYER_MM) up to SCALP_MM; HEAD_TISSUE; AIR
    iron: np.ndarray  # 0..1 relative iron load of deep nuclei
    regions: np.ndarray  # uint8 MARS region codes, EXCLUDED, 0 elsewhere
    boundary_distance: np.ndarray  # float16 mm to the nearest voxel of another region label (capped)
    tissue_depth: np.ndarray  # float16 mm to the nearest non-tissue voxel (CSF or outside the brain)
    cortex_distance: np.ndarray  # float16 mm to cortical grey matter
    ventricle_distance: np.ndarray  # float16 mm to the ventricles
    gm_wm_junction: np.ndarray  # uint8 1 where grey and white matter meet (lobar placement)

    geometry: np.ndarray  # float64 (15,): origin (3), spacing (3), direction (9) of the template grid (LPS)

    @cached_property
    def reference(self) -> sitk.Image:
        """An image on the template grid (geometry only), for resampling and index/RAS conversions."""
        image = sitk.Image([int(n) for n in self.gm.shape[::-1]], sitk.sitkUInt8)
        image.SetOrigin(self.geometry[:3].tolist())
        image.SetSpacing(self.geometry[3:6].tolist())
        image.SetDirection(self.geometry[6:].tolist())
        return image

    def index_to_ras(self, kji: np.ndarray) -> np.ndarray:
        """``[k, j, i]`` indices (n, 3) to RAS mm."""
        return index_to_ras(self.reference, np.asarray(kji, dtype=float)[..., ::-1])

    def ras_to_index(self, ras: np.ndarray) -> np.ndarray:
        """RAS mm (n, 3) to continuous ``[k, j, i]`` indices."""
        return np.asarray(ras_to_index(self.reference, ras))[..., ::-1]

    def ras_axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RAS x, y, z (mm) along the array axes i, j, k, shaped to broadcast against ``[k, j, i]`` arrays."""
        return _ras_grids(self.reference)

    def sample(self, name: str, kji: np.ndarray) -> np.ndarray:
        """Nearest-voxel values of field ``name`` at continuous ``[k, j, i]`` points (n, 3), clipped to the grid."""
        array = getattr(self, name)
        idx = np.rint(kji).astype(int)
        for axis in range(3):
            np.clip(idx[:, axis], 0, array.shape[axis] - 1, out=idx[:, axis])
        return array[idx[:, 0], idx[:, 1], idx[:, 2]]


def _ras_grids(reference: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Open RAS coordinate grids (x, y, z) broadcastable to ``[k, j, i]`` (the template is axis-aligned)."""
    shape = reference.GetSize()[::-1]
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(direction), np.eye(3)):
        raise ValueError("the MNI template grid is expected to be axis-aligned")
    x = index_to_ras(reference, np.stack([np.arange(shape[2]), np.zeros(shape[2]), np.zeros(shape[2])], 1))[:, 0]
    y = index_to_ras(reference, np.stack([np.zeros(shape[1]), np.arange(shape[1]), np.zeros(shape[1])], 1))[:, 1]
    z = index_to_ras(reference, np.stack([np.zeros(shape[0]), np.zeros(shape[0]), np.arange(shape[0])], 1))[:, 2]
    return x[None, None, :], y[None, :, None], z[:, None, None]


def _edt(mask: np.ndarray) -> np.ndarray:
    """Distance (mm, 1 mm grid) from each voxel to the nearest ``False`` voxel."""
    return ndimage.distance_transform_edt(mask).astype(np.float32)


def _labels_matching(atlas: MniAtlas, prefixes: tuple[str, ...]) -> np.ndarray:
    values = [v for v, name in atlas.aal_names.items() if name.startswith(prefixes)]
    return np.isin(atlas.array("aal"), values)


def _head_layers(brain: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intracranial space and the :attr:`PhantomAnatomy.head_layer` codes (the template is skull-stripped)."""
    dilated = _edt(~brain) <= 6.0
    intracranial = brain | (_edt(dilated) > 4.0)  # closing by 6 mm then a net 2 mm dilation: smooth inner table
    outside = _edt(~intracranial)
    layer = np.full(brain.shape, AIR, np.uint8)
    # Below the temporal lobes the head goes on (face, skull base, neck): keep the widest outline there.
    zk = np.flatnonzero((z.ravel() > -38.0) & (z.ravel() < -30.0))
    outline = (outside[zk] <= SCALP_MM).any(axis=0)
    layer[np.flatnonzero(z.ravel() <= -30.0)] = np.where(outline, HEAD_TISSUE, AIR)[None]
    shell = outside <= SCALP_MM
    layer[shell] = np.ceil(outside[shell] / LAYER_MM).astype(np.uint8)
    return intracranial, layer


def _iron_map(atlas: MniAtlas, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    iron = np.zeros(atlas.array("t1").shape, np.float32)
    iron[_labels_matching(atlas, ("Pallidum",))] = 1.0
    putamen = _labels_matching(atlas, ("Putamen",))
    # Putaminal iron rises posteriorly and laterally.
    grad = np.clip(0.45 - 0.012 * y + 0.008 * (np.abs(x) - 25.0), 0.3, 0.8)
    iron[putamen] = np.broadcast_to(grad, iron.shape)[putamen]
    iron[_labels_matching(atlas, ("Caudate",))] = 0.25
    iron[_labels_matching(atlas, ("Thalamus",))] = 0.12
    for centre, axes, load in IRON_ELLIPSOIDS:
        for sign in (1.0, -1.0):
            r2 = ((x - sign * centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 + ((z - centre[2]) / axes[2]) ** 2
            iron = np.maximum(iron, load * (r2 <= 1.0))
    return ndimage.gaussian_filter(iron, 0.8)


def _region_labels(atlas: MniAtlas, gm: np.ndarray, wm: np.ndarray, brain: np.ndarray, x: np.ndarray) -> np.ndarray:
    """MARS region codes split by side, from :func:`mars_regions.load_region_map` (the map the detector
    reports with), with debatable cortex and the midline set to :data:`EXCLUDED`."""
    mars = sitk.GetArrayFromImage(load_region_map())
    regions = np.zeros(gm.shape, np.uint8)
    right = np.broadcast_to(x > 0, gm.shape)
    for region in REGIONS:
        mask = mars == REGION_CODES[region]
        regions[mask & ~right] = region_code(region, "left")
        regions[mask & right] = region_code(region, "right")
    debatable = _labels_matching(atlas, _DEBATABLE_CORTEX)
    regions[debatable & (regions > 0)] = EXCLUDED
    regions[(np.abs(np.broadcast_to(x, gm.shape)) < 1.0) & (regions > 0)] = EXCLUDED
    regions[~brain] = 0
    return regions


def _boundary_distance(regions: np.ndarray, cap: float = 16.0) -> np.ndarray:
    """For each labelled voxel, mm to the nearest voxel holding a different non-zero label."""
    out = np.zeros(regions.shape, np.float16)
    pad = int(cap) + 1
    for code in np.unique(regions):
        if code in (0, EXCLUDED):
            continue
        own = regions == code
        box = tuple(slice(max(s.start - pad, 0), s.stop + pad) for s in ndimage.find_objects(own.astype(np.uint8))[0])
        sub = regions[box]
        other = (sub != 0) & (sub != code)
        dist = np.minimum(_edt(~other), cap)
        out[box][own[box]] = dist[own[box]]
    return out


def build_anatomy(atlas: MniAtlas | None = None) -> PhantomAnatomy:
    """Derive every phantom array from the MNI atlas (~20 s; prefer :func:`load_anatomy`)."""
    atlas = atlas or load_mni_atlas()
    x, y, z = _ras_grids(atlas.t1)
    gm = atlas.array("gm").astype(np.float32)
    wm = atlas.array("wm").astype(np.float32)
    brain = atlas.array("brain") > 0
    intracranial, head_layer = _head_layers(brain, z)
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * intracranial
    regions = _region_labels(atlas, gm, wm, brain, x)
    cortex = (gm > 0.3) & (gm > wm) & np.isin(regions, [region_code(r, s) for r in LOBAR for s in SIDES])
    cortex_distance = _edt(~cortex)
    ventricles = brain & (gm + wm < 0.5) & (_edt(brain) > 8.0)
    ventricle_distance = _edt(~ventricles)
    tissue_depth = _edt(brain & (gm + wm > 0.5))
    junction = (gm > 0.25) & (gm < 0.75) & (wm > 0.2)
    return PhantomAnatomy(
        gm=gm.astype(np.float16),
        wm=wm.astype(np.float16),
        csf=csf.astype(np.float16),
        brain=brain.astype(np.uint8),
        head_layer=head_layer,
        iron=_iron_map(atlas, x, y, z).astype(np.float16),
        regions=regions,
        boundary_distance=_boundary_distance(regions),
        tissue_depth=tissue_depth.astype(np.float16),
        cortex_distance=np.minimum(cortex_distance, 60).astype(np.float16),
        ventricle_distance=np.minimum(ventricle_distance, 60).astype(np.float16),
        gm_wm_junction=junction.astype(np.uint8),
        geometry=np.concatenate([atlas.t1.GetOrigin(), atlas.t1.GetSpacing(), atlas.t1.GetDirection()]),
    )


@lru_cache(maxsize=1)
def load_anatomy() -> PhantomAnatomy:
    """The phantom anatomy, from the disk cache when present, else built and cached (once per process)."""
    # Keyed by the MARS map's version too: the region labels come from it.
    path = cache_dir() / f"phantom_anatomy_v{CACHE_VERSION}_mars{REGION_MAP_VERSION}.npz"
    names = [f.name for f in fields(PhantomAnatomy)]
    if path.exists():
        try:
            with np.load(path) as data:
                return _in_memory({name: data[name] for name in names})
        except (OSError, KeyError, ValueError) as exc:  # a stale or truncated cache is rebuilt
            log.warning("ignoring unreadable phantom cache %s (%s)", path, exc)
    anatomy = build_anatomy()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **{name: getattr(anatomy, name) for name in names})
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home still works, just slower
        log.warning("cannot cache phantom anatomy in %s (%s)", path.parent, exc)
    return _in_memory({name: getattr(anatomy, name) for name in names})


def _in_memory(arrays: dict[str, np.ndarray]) -> PhantomAnatomy:
    """Tissue maps as float32 (stored as float16): every subject computes with them over the whole grid."""
    for name in ("gm", "wm", "csf", "iron"):
        arrays[name] = arrays[name].astype(np.float32)
    return PhantomAnatomy(**arrays)
