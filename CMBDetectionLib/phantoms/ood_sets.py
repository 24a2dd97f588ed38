"""The out-of-distribution (OOD) test matrix: named phantom sets, each shifting ONE thing past the training ranges.

Every set is :data:`settings.DEFAULT` (what the shipped models learned) with one change, and lies outside the
domain-randomised training preset :data:`settings.RANDOMISED` as well (``Testing/phantoms/test_ood_sets.py`` checks
both), so the matrix measures generalisation. ``baseline`` is the unshifted generator on fresh seeds, for
reference; it is not an OOD set.

Seeds: the matrix owns 20000-29999; set ``k`` uses ``20000 + 100 k`` onwards (up to 100 subjects). Never train,
fit or choose settings on these subjects.

>>> ood_set("snr-8-12").settings.snr
(8.0, 12.0)
>>> ood_seeds(ood_set("snr-8-12"), 2)
[20600, 20601]
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from CMBDetectionLib.phantoms.settings import DEFAULT, PhantomSettings

OOD_SEED_RANGE = (20000, 29999)
SEEDS_PER_SET = 100
#: every axial voxel order (i toward left or right, j posterior or anterior, k superior or inferior); the generator
#: takes order ``seed % 8``, so the oblique set's first seeds (21300 % 8 = 4) get LAS, RAS, LPS (as dcm2niix, NIfTI
#: tools and DICOM write them), then RPI
ALL_AXIAL_ORDERS = ("LPI", "RPS", "LAI", "RAI", "LAS", "RAS", "LPS", "RPI")


@dataclass(frozen=True)
class OodSet:
    """A named phantom set: ``settings`` for the subjects, what it ``shifts`` (in words), its seed block ``index``."""

    name: str
    shift: str
    index: int
    settings: PhantomSettings

    @property
    def first_seed(self) -> int:
        return OOD_SEED_RANGE[0] + SEEDS_PER_SET * self.index

    @property
    def is_shifted(self) -> bool:
        """False for the in-distribution ``baseline``."""
        return self.settings != DEFAULT

    def changed_settings(self) -> dict[str, object]:
        """The settings that differ from the training defaults, by name."""
        return {f.name: getattr(self.settings, f.name) for f in fields(PhantomSettings)
                if getattr(self.settings, f.name) != getattr(DEFAULT, f.name)}


def _set(index: int, name: str, shift: str, **changes: object) -> OodSet:
    return OodSet(name, shift, index, replace(DEFAULT, **changes))


# Indices are fixed (they choose each set's seeds): add new sets at the end, never renumber.
_SETS = (
    _set(0, "baseline", "nothing: the training generator on fresh seeds (reference, not OOD)"),
    _set(1, "inplane-0.45", "in-plane voxels 0.45 mm (512 x 512), training 0.9", in_plane_mm=(0.45, 0.45)),
    _set(2, "inplane-0.6", "in-plane voxels 0.6 mm, training 0.9", in_plane_mm=(0.6, 0.6)),
    _set(3, "inplane-1.2", "in-plane voxels 1.2 mm, training 0.9", in_plane_mm=(1.2, 1.2)),
    _set(4, "slices-1mm", "1 mm slices (same coverage), training 2 mm", slice_mm=(1.0, 1.0)),
    _set(5, "slices-3mm", "3 mm slices (same coverage), training 2 mm", slice_mm=(3.0, 3.0)),
    _set(6, "snr-8-12", "SNR 8-12, training 12-40", snr=(8.0, 12.0)),
    _set(7, "contrast-inverted", "grey matter 25-40 % darker than white, training at most 20 %",
         gm_wm_contrast=(0.25, 0.4), p_gm_brighter=0.0),
    _set(8, "contrast-flat", "grey and white matter within 2 %, training 5-20 % apart",
         gm_wm_contrast=(0.0, 0.02), p_gm_brighter=0.5),
    _set(9, "cmb-faint", "CMBs losing 30-50 % of the signal, training 85-98 %", cmb_depth=(0.3, 0.5)),
    _set(10, "cmb-2mm", "every CMB 2 mm across, training 2-10 mm (mostly over 3)", cmb_diameter_mm=(2.0, 2.0)),
    _set(11, "texture", "tissue texture of 8-15 % (1-3 mm grain), training none", texture=(0.08, 0.15)),
    _set(12, "veins-2x", "twice the veins, training 1x", vein_density=(2.0, 2.0)),
    _set(13, "oblique", "slab tilted 12-20 degrees, all 8 axial voxel orders, training axis-aligned LPS",
         tilt_deg=(12.0, 20.0), voxel_orders=ALL_AXIAL_ORDERS),
    _set(14, "partial-slab", "slabs of 8-30 slices anywhere along the brain, training whole-brain 70",
         n_slices=(8, 30), slab_position="random"),
    _set(15, "air-artefacts", "air-tissue dropout 1.6-2x wider and 8-15 dark spots at the skull base, training 1x "
         "and none", air_artefact_extent=(1.6, 2.0), skull_base_spots=(8, 15)),
    _set(16, "bias-strong", "bias field 3-4x stronger (log-field), training 1x", bias_strength=(3.0, 4.0)),
    _set(17, "warp-strong", "non-linear anatomy warp of 4-6 mm, training affine only", warp_mm=(4.0, 6.0)),
    _set(18, "cmb-irregular", "lobulated CMB outlines (radius +-30-45 %), training spheres",
         p_irregular=1.0, irregularity=(0.3, 0.45)),
    _set(19, "cmb-elongated", "CMBs 2-3x longer than wide, training spheres", p_elongated=1.0, elongation=(2.0, 3.0)),
    _set(20, "cmb-clustered", "clusters of 2-4 CMBs about a voxel apart, training 3 mm or more apart",
         p_clustered=0.6),
    _set(21, "cmb-touching-veins", "every CMB 0-0.3 mm from a vein wall, training 0.5-2.5 mm for a quarter",
         p_next_to_vein=1.0, vein_gap_mm=(0.0, 0.3)),
    _set(22, "dipole", "CMBs rendered by the physical dipole model (3 T, TE 20 ms), training soft spheres",
         lesion_renderer="dipole"),
)
OOD_SETS: dict[str, OodSet] = {s.name: s for s in _SETS}


def ood_set(name: str) -> OodSet:
    """The set called ``name``; a ValueError listing the names otherwise."""
    if name not in OOD_SETS:
        raise ValueError(f"unknown OOD set {name!r}; choose one of {', '.join(OOD_SETS)}.")
    return OOD_SETS[name]


def ood_seeds(chosen: OodSet, n: int) -> list[int]:
    """The first ``n`` seeds of a set's block (1-100)."""
    if not 1 <= n <= SEEDS_PER_SET:
        raise ValueError(f"{n} subjects asked of OOD set {chosen.name}; use 1-{SEEDS_PER_SET}.")
    return list(range(chosen.first_seed, chosen.first_seed + n))
