"""The MARS region map: every voxel of the MNI template grid labelled with one MARS region.

Built from AAL (cortex, deep nuclei, cerebellum) and the template's grey/white matter maps
(``mni_atlas``); no FSL atlas is used (their licence is non-commercial). Regions no atlas covers are
derived by the geometric rules below, applied in this order to brain voxels that AAL leaves unlabelled
(white matter, CSF, midline), distances in mm on the 1 mm grid:

1. brainstem: unlabelled tissue in a box under the thalamus and in front of the cerebellum
   (y -48..-6; z -65..-2; |x| <= 26 above z = -18 where the cerebral peduncles splay out, |x| <= 16 below);
2. internal capsule: between the lentiform nucleus (putamen + pallidum) and the thalamus or caudate:
   d(lentiform) + d(thalamus or caudate) <= 13;
3. external capsule: between putamen and insula: d(putamen) + d(insula) <= 11;
4. corpus callosum: white matter (wm > gm) with |x| <= 10 within 10 mm of the lateral ventricles and
   above their floor (z >= -2);
5. lobar (juxtacortical): within :data:`JUXTACORTICAL_MM` (4 mm) of a lobe's AAL cortex -> that lobe (nearest
   cortex voxel). This is the boundary between lobar and deep white matter: MARS counts subcortical white
   matter "at the grey-white junction" with its lobe and gives no distance, so ours is one 4 mm step of the
   template grid (about the width of U-fibres). White matter 4 mm or less from a lobe's cortex is lobar.
   Farther in, it is deep white matter, unless rules 1-4 or 6 claimed it first;
6. cerebellum: nearest AAL label is cerebellar (cerebellar white matter, dentate);
7. deep white matter: everything else inside the brain (deep and periventricular white matter and the
   ventricles, which MARS counts as one region).

Outside the brain mask the map is extended by the nearest region for :data:`OUTSIDE_MARGIN_MM`, so a
superficial lesion or a small registration error still gets a region. The side is not stored: it is
the sign of the MNI x coordinate (x >= 0 right).

The built map is cached as NIfTI in ``$CMBDETECTION_CACHE`` (default ``~/.cache/cmbdetection``), keyed by
:data:`REGION_MAP_VERSION`, so later runs load it in well under a second.

>>> regions = load_region_map()                      # doctest: +SKIP
>>> MARS_REGIONS[REGION_NAMES[int(regions[72, 110, 88])]]   # doctest: +SKIP
'deep'
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from CMBDetectionLib.mars.atlas import MniAtlas, aal_labels_matching, load_mni_atlas
from CMBDetectionLib.settings import cache_dir

REGION_MAP_VERSION = "v1"
OUTSIDE_MARGIN_MM = 10.0

#: region -> MARS category, in the order used for region codes (code = position + 1; 0 = outside).
MARS_REGIONS: dict[str, str] = {
    "frontal": "lobar",
    "parietal": "lobar",
    "temporal": "lobar",
    "occipital": "lobar",
    "insula": "lobar",
    "basal_ganglia": "deep",
    "thalamus": "deep",
    "internal_capsule": "deep",
    "external_capsule": "deep",
    "corpus_callosum": "deep",
    "deep_white_matter": "deep",
    "brainstem": "infratentorial",
    "cerebellum": "infratentorial",
}
MARS_CATEGORIES: tuple[str, ...] = ("lobar", "deep", "infratentorial")
SIDES: tuple[str, ...] = ("left", "right")  # of the MNI midline
REGION_NAMES: dict[int, str] = {code: name for code, name in enumerate(MARS_REGIONS, start=1)}
REGION_CODES: dict[str, int] = {name: code for code, name in REGION_NAMES.items()}

# AAL name prefixes per region. Cingulate, hippocampal and amygdala cortex go to the lobe they adjoin.
_AAL_PREFIXES: dict[str, tuple[str, ...]] = {
    "frontal": ("Precentral", "Frontal", "Rolandic", "Supp_Motor", "Olfactory", "Rectus", "Paracentral",
                "Cingulum_Ant", "Cingulum_Mid"),
    "parietal": ("Postcentral", "Parietal", "SupraMarginal", "Angular", "Precuneus", "Cingulum_Post"),
    "temporal": ("Temporal", "Heschl", "Hippocampus", "ParaHippocampal", "Amygdala", "Fusiform"),
    "occipital": ("Calcarine", "Cuneus", "Lingual", "Occipital"),
    "insula": ("Insula",),
    "basal_ganglia": ("Caudate", "Putamen", "Pallidum"),
    "thalamus": ("Thalamus",),
    "cerebellum": ("Cerebelum", "Vermis"),
}
_LOBES = ("frontal", "parietal", "temporal", "occipital", "insula")
JUXTACORTICAL_MM = 4.0  # deep/lobar white-matter boundary: distance (mm) to a lobe's cortex


def cache_path() -> Path:
    """Where the built map is stored, under :func:`CMBDetectionLib.settings.cache_dir`."""
    return cache_dir() / f"mars_regions_{REGION_MAP_VERSION}.nii.gz"


def load_region_map(rebuild: bool = False) -> sitk.Image:
    """The MARS region map (uint8 codes, see :data:`REGION_NAMES`) on the MNI template grid; built once, then cached."""
    path = cache_path()
    if path.exists() and not rebuild:
        return sitk.ReadImage(str(path))
    atlas = load_mni_atlas()
    image = sitk.GetImageFromArray(build_region_array(atlas))
    image.CopyInformation(atlas.t1)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name first so a concurrent reader never sees half a file.
    tmp = path.with_name(f".{os.getpid()}_{path.name}")
    sitk.WriteImage(image, str(tmp), useCompression=True)
    os.replace(tmp, path)
    return image


def _ras_axes(reference: sitk.Image, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RAS coordinates (mm) of the voxels in ``box`` (k, j, i slices) of an axis-aligned image, broadcastable."""
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    if not np.allclose(np.abs(direction), np.eye(3)):
        raise ValueError("the MNI template grid must be axis-aligned")
    lps = [reference.GetOrigin()[a] + direction[a, a] * reference.GetSpacing()[a] * np.arange(n)
           for a, n in enumerate(reference.GetSize())]
    x, y, z = -lps[0][box[2]], -lps[1][box[1]], lps[2][box[0]]
    return z[:, None, None], y[None, :, None], x[None, None, :]


def _distance_to(mask: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(~mask).astype(np.float32)


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of ``mask``'s bounding box grown by ``margin`` voxels (clipped to the array)."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, mask.shape))


def _aal_regions(atlas: MniAtlas) -> np.ndarray:
    aal = atlas.array("aal")
    codes = np.zeros(aal.shape, np.uint8)
    for region, prefixes in _AAL_PREFIXES.items():
        codes[np.isin(aal, aal_labels_matching(atlas, *prefixes))] = REGION_CODES[region]
    return codes


def _lateral_ventricles(csf: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """CSF deep inside the brain (> 12 mm from its surface), in components of at least 1 ml."""
    deep = csf & (ndimage.distance_transform_edt(brain) > 12)
    labels, n = ndimage.label(deep)
    sizes = ndimage.sum(deep, labels, range(1, n + 1))
    return np.isin(labels, 1 + np.flatnonzero(sizes >= 1000))


def _assign(codes: np.ndarray, free: np.ndarray, region: str, rule: np.ndarray) -> None:
    """Give ``region`` to the still-unlabelled voxels where ``rule`` holds (both arrays updated in place)."""
    hit = free & rule
    codes[hit] = REGION_CODES[region]
    free &= ~hit


def _deep_rules(atlas: MniAtlas, crop: dict[str, np.ndarray], codes: np.ndarray,
                ras: tuple[np.ndarray, ...], ventricles: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Rules 2-4 (capsules, corpus callosum) as masks, all arrays over the same box."""
    z, _, x = ras

    def aal_mask(*prefixes: str) -> np.ndarray:
        return np.isin(crop["aal"], aal_labels_matching(atlas, *prefixes))

    putamen = aal_mask("Putamen")
    insula = codes == REGION_CODES["insula"]
    white = crop["wm"] > crop["gm"]
    return [
        ("internal_capsule",
         _distance_to(aal_mask("Putamen", "Pallidum")) + _distance_to(aal_mask("Thalamus", "Caudate")) <= 13),
        ("external_capsule", _distance_to(putamen) + _distance_to(insula) <= 11),
        ("corpus_callosum", white & (np.abs(x) <= 10) & (z >= -2) & (_distance_to(ventricles) <= 10)),
    ]


def _label_brain(atlas: MniAtlas, box: tuple[slice, ...]) -> np.ndarray:
    """Region codes inside ``box`` (which holds the brain plus the outside margin)."""
    crop = {name: atlas.array(name)[box] for name in ("brain", "aal", "gm", "wm")}
    brain = crop["brain"] > 0
    z, y, x = _ras_axes(atlas.t1, box)
    codes = _aal_regions(atlas)[box]
    codes[~brain] = 0
    free = brain & (codes == 0)

    _assign(codes, free, "brainstem",
            (y >= -48) & (y <= -6) & (z >= -65) & (z <= -2) & (np.abs(x) <= np.where(z > -18, 26, 16)))
    ventricles = _lateral_ventricles(brain & (crop["gm"] + crop["wm"] < 0.5), brain)
    # The capsule and callosum rules only matter around the deep nuclei: a smaller box keeps them fast.
    deep_codes = [REGION_CODES[r] for r in ("basal_ganglia", "thalamus", "insula")]
    deep = _bounding_box(np.isin(codes, deep_codes) | ventricles, 14)
    deep_crop = {name: array[deep] for name, array in crop.items()}
    deep_ras = _ras_axes(atlas.t1, tuple(slice(b.start + d.start, b.start + d.stop) for b, d in zip(box, deep)))
    for region, rule in _deep_rules(atlas, deep_crop, codes[deep], deep_ras, ventricles[deep]):
        _assign(codes[deep], free[deep], region, rule)

    lobes = np.isin(codes, [REGION_CODES[r] for r in _LOBES])
    distance, lobe = _nearest(codes, lobes)
    juxtacortical = free & (distance <= JUXTACORTICAL_MM)
    codes[juxtacortical] = lobe[juxtacortical]
    free &= ~juxtacortical

    # Whatever is left: cerebellar white matter if its nearest label is cerebellar, else deep white matter;
    # voxels just outside the brain take their nearest region.
    distance, nearest = _nearest(codes, codes > 0)
    cerebellar = free & (nearest == REGION_CODES["cerebellum"])
    margin = ~brain & (distance <= OUTSIDE_MARGIN_MM)
    codes[cerebellar] = REGION_CODES["cerebellum"]
    codes[free & ~cerebellar] = REGION_CODES["deep_white_matter"]
    codes[margin] = nearest[margin]
    return codes


def _nearest(codes: np.ndarray, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to, and code of, the nearest ``sources`` voxel, for every voxel."""
    distance, index = ndimage.distance_transform_edt(~sources, return_indices=True)
    return distance, codes[tuple(index)]


def build_region_array(atlas: MniAtlas) -> np.ndarray:
    """Apply the documented rules; returns ``[k, j, i]`` uint8 region codes on the template grid (~15 s)."""
    brain = atlas.array("brain") > 0
    box = _bounding_box(brain, int(OUTSIDE_MARGIN_MM) + 1)
    codes = np.zeros(brain.shape, np.uint8)
    codes[box] = _label_brain(atlas, box)
    return codes
