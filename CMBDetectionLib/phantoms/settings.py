"""What the phantom generator may draw: one frozen dataclass of ranges, checked on creation.

Every ``(low, high)`` pair is a range drawn uniformly per subject (equal ends: a fixed value). The defaults are the
generator the shipped models were trained on, so ``PhantomSettings()`` reproduces every earlier subject exactly;
:data:`RANDOMISED` is the wide, SynthSeg-style training preset and :mod:`phantoms.ood_sets` shifts one range at a
time past both.

>>> PhantomSettings().grid_size(0.9), PhantomSettings().slice_count(2.0, 140.0)
(256, 70)
>>> PhantomSettings(snr=(40.0, 12.0))
Traceback (most recent call last):
...
ValueError: phantom setting snr=(40.0, 12.0) is reversed; give (low, high) with low <= high.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

Range = tuple[float, float]

#: axis letters and the LPS unit vector each names (SimpleITK's physical frame)
AXIS_LETTERS = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}
LESION_RENDERERS = ("sphere", "dipole")
SLAB_POSITIONS = ("vertex", "random")

# Allowed span of each range field (inclusive) and its unit, for the one-line errors.
_BOUNDS: dict[str, tuple[float, float, str]] = {
    "in_plane_mm": (0.2, 5.0, "mm"),
    "slice_mm": (0.2, 10.0, "mm"),
    "slab_mm": (4.0, 1000.0, "mm"),
    "n_slices": (8, 2000, "slices"),
    "tilt_deg": (0.0, 45.0, "degrees"),
    "head_scale": (0.5, 1.5, ""),
    "warp_mm": (0.0, 15.0, "mm"),
    "gm_wm_contrast": (0.0, 0.9, "(fraction of white matter)"),
    "csf": (0.0, 2.0, "(white matter = 0.5)"),
    "iron": (0.0, 0.95, "(fraction of signal lost)"),
    "texture": (0.0, 0.5, "(relative std)"),
    "gamma": (0.2, 5.0, ""),
    "snr": (1.0, 1000.0, ""),
    "bias_strength": (0.0, 10.0, "x"),
    "blur_voxels": (0.0, 3.0, "voxels"),
    "air_artefact_extent": (0.0, 4.0, "x"),
    "skull_base_spots": (0, 100, "spots"),
    "vein_density": (0.0, 5.0, "x"),
    "cmb_diameter_mm": (0.5, 15.0, "mm"),
    "cmb_depth": (0.0, 1.0, "(fraction of signal lost)"),
    "vein_gap_mm": (0.0, 10.0, "mm"),
    "elongation": (1.0, 5.0, "(long / short axis)"),
    "irregularity": (0.0, 0.6, "(relative radius change)"),
    "dipole_chi_ppm": (0.0, 5.0, "ppm"),
}
_PROBABILITIES = ("p_gm_brighter", "p_next_to_vein", "p_irregular", "p_elongated", "p_clustered")


@dataclass(frozen=True)
class PhantomSettings:
    """Ranges the generator draws each subject from (the defaults: the generator the shipped models learned).

    Geometry: ``in_plane_mm`` voxel size, matrix ``round(fov_mm / in-plane)``; ``slice_mm`` slice spacing and
    ``round(slab / slice)`` slices (``slab_mm`` drawn) unless ``n_slices`` is given; a slab shorter than the brain
    keeps the vertex (``slab_position="vertex"``) or sits anywhere along it (``"random"``). ``tilt_deg`` tilts the
    slab about a random in-plane axis; ``voxel_orders`` are axis codes (``"LPS"``: i toward left, j posterior,
    k superior; the third letter must be S or I), cycled by seed. Anatomy: the head's scale and rotation, and a
    smooth non-linear ``warp_mm`` (largest displacement). Contrast: grey matter ``gm_wm_contrast`` brighter (probability
    ``p_gm_brighter``) or darker than white matter, CSF and iron levels, multiplicative tissue ``texture`` and
    ``gamma``. Scan: ``snr`` (brain median / noise), bias field and blur strength, air-tissue dropout
    ``air_artefact_extent`` and ``skull_base_spots`` (small dark partial-volume spots, not CMBs). Mimics:
    ``vein_density`` scales the number of veins. CMBs: diameter, ``cmb_depth`` (signal lost at the core), how
    often they lie next to a vein and how close (``vein_gap_mm``: closest, farthest), irregular, elongated and
    clustered shapes, and the ``lesion_renderer`` (soft ``sphere`` or the physical ``dipole`` model at ``b0_tesla``
    and ``te_ms`` with ``dipole_chi_ppm``).
    """

    in_plane_mm: Range = (0.9, 0.9)
    fov_mm: float = 230.4
    slice_mm: Range = (2.0, 2.0)
    slab_mm: Range = (140.0, 140.0)
    n_slices: tuple[int, int] | None = None
    slab_position: str = "vertex"
    tilt_deg: Range = (0.0, 0.0)
    voxel_orders: tuple[str, ...] = ("LPS",)
    head_scale: Range = (0.9, 1.1)
    head_rotation_deg: float = 10.0
    warp_mm: Range = (0.0, 0.0)
    gm_wm_contrast: Range = (0.05, 0.2)
    p_gm_brighter: float = 0.75
    csf: Range = (0.8, 1.0)
    iron: Range = (0.35, 0.6)
    texture: Range = (0.0, 0.0)
    gamma: Range = (1.0, 1.0)
    snr: Range = (12.0, 40.0)
    bias_strength: Range = (1.0, 1.0)
    blur_voxels: Range = (0.3, 0.6)
    air_artefact_extent: Range = (1.0, 1.0)
    skull_base_spots: tuple[int, int] = (0, 0)
    vein_density: Range = (1.0, 1.0)
    cmb_diameter_mm: Range = (2.0, 10.0)
    cmb_depth: Range = (0.85, 0.98)
    p_next_to_vein: float = 0.25
    vein_gap_mm: Range = (0.5, 2.5)
    p_irregular: float = 0.0
    irregularity: Range = (0.0, 0.0)
    p_elongated: float = 0.0
    elongation: Range = (1.0, 1.0)
    p_clustered: float = 0.0
    lesion_renderer: str = "sphere"
    dipole_chi_ppm: Range = (0.4, 1.0)
    b0_tesla: float = 3.0
    te_ms: float = 20.0

    def __post_init__(self) -> None:
        for name, (low, high, unit) in _BOUNDS.items():
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, low, high, unit)
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"phantom setting {name}={getattr(self, name)} is not a probability; use 0-1.")
        _check_choice("slab_position", self.slab_position, SLAB_POSITIONS)
        _check_choice("lesion_renderer", self.lesion_renderer, LESION_RENDERERS)
        if not self.voxel_orders:
            raise ValueError("phantom setting voxel_orders is empty; give at least one code such as 'LPS'.")
        for code in self.voxel_orders:
            check_voxel_order(code)
        for name, value, low, high in (("fov_mm", self.fov_mm, 20.0, 1000.0),
                                       ("head_rotation_deg", self.head_rotation_deg, 0.0, 180.0),
                                       ("b0_tesla", self.b0_tesla, 0.1, 11.7), ("te_ms", self.te_ms, 1.0, 100.0)):
            if not low <= value <= high:
                raise ValueError(f"phantom setting {name}={value} is out of range; use {low:g}-{high:g}.")

    def grid_size(self, in_plane_mm: float) -> int:
        """In-plane matrix at voxel size ``in_plane_mm`` (the field of view stays ``fov_mm``)."""
        return int(round(self.fov_mm / in_plane_mm))

    @staticmethod
    def slice_count(slice_mm: float, slab_mm: float) -> int:
        """Slices of a slab ``slab_mm`` thick at spacing ``slice_mm`` (used when ``n_slices`` is None)."""
        return int(round(slab_mm / slice_mm))

    def with_grid(self, size: int | None = None, spacing: float | None = None, slice_thickness: float | None = None,
                  n_slices: int | None = None) -> PhantomSettings:
        """These settings on a fixed grid (the generator's original arguments); None keeps a value.

        >>> s = PhantomSettings().with_grid(size=128, spacing=1.8)
        >>> s.in_plane_mm, s.grid_size(1.8)
        ((1.8, 1.8), 128)
        """
        changes: dict[str, Any] = {}
        if spacing is not None:
            changes["in_plane_mm"] = (spacing, spacing)
        if size is not None:
            low, high = changes.get("in_plane_mm", self.in_plane_mm)
            if low != high:
                raise ValueError("a fixed matrix size needs a fixed in-plane spacing; "
                                 "give the spacing (--spacing) as well.")
            changes["fov_mm"] = size * low
        if slice_thickness is not None:
            changes["slice_mm"] = (slice_thickness, slice_thickness)
        if n_slices is not None:
            changes["n_slices"] = (n_slices, n_slices)
        return replace(self, **changes) if changes else self

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PhantomSettings:
        """The inverse of :meth:`as_dict`; unknown names are an error.

        >>> PhantomSettings.from_dict(PhantomSettings().as_dict()) == PhantomSettings()
        True
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown phantom setting(s) {', '.join(unknown)}; use names of PhantomSettings.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def check_voxel_order(code: str) -> str:
    """``code`` if it is a 3-letter axis code of an axial slab (``LPS``, ``RAS``, ``LAI``...), else a ValueError.

    >>> check_voxel_order("RAS")
    'RAS'
    """
    axes = [AXIS_LETTERS.get(letter) for letter in code] if len(code) == 3 else [None]
    if None in axes or len({tuple(abs(c) for c in a) for a in axes}) != 3 or code[2] not in "SI":
        raise ValueError(f"voxel order {code!r} is not an axial axis code; use 3 letters from L/R, P/A, S/I with "
                         "S or I last, e.g. 'LPS' or 'RAS'.")
    return code


def _check_range(name: str, value: tuple, low: float, high: float, unit: str) -> None:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise ValueError(f"phantom setting {name}={value!r} is not a (low, high) pair; give two numbers.")
    if value[0] > value[1]:
        raise ValueError(f"phantom setting {name}={value} is reversed; give (low, high) with low <= high.")
    if value[0] < low or value[1] > high:
        raise ValueError(f"phantom setting {name}={value} is out of range; use {low:g}-{high:g} {unit}".rstrip() + ".")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"phantom setting {name}={value!r} is unknown; use one of {', '.join(choices)}.")


#: The preset the shipped models were trained on.
DEFAULT = PhantomSettings()

#: Wide domain-randomised training ranges (SynthSeg-style: randomise what should not matter, past realism), with
#: the hard negatives turned up. Each stops short of the value :mod:`phantoms.ood_sets` shifts to, so that the OOD
#: matrix measures generalisation: in-plane 0.65-1.1 mm (matrix: 0.45, 0.6, 1.2), slices 1.25-2.75 mm (1, 3),
#: SNR from 12.5 (8-12), GM/WM contrast 0.03-0.22 either way (flat: under 0.02; inverted: 0.25-0.4), CMB depth from
#: 0.55 (0.3-0.5), texture up to 0.04 (0.08-0.15), veins 0.6-1.6x (2x), tilt up to 10 deg (12-20), slabs of 70+
#: mm (8-30 slices), dropout extent up to 1.3x (1.6-2.0x), bias up to 2x (3-4x), warp up to 2.5 mm (4-6), and CMBs
#: elongated up to 1.9 / irregular up to 0.15 (2-3 / 0.3-0.45) that never touch a vein (gap 0.5 mm; matrix: 0-0.3).
#: Ovoid CMBs up to 1.9x come often (35 %): a 2D slice model that rarely sees them takes any elongated dark
#: spot for a vein segment.
RANDOMISED = PhantomSettings(
    in_plane_mm=(0.65, 1.1),
    slice_mm=(1.25, 2.75),
    slab_mm=(70.0, 150.0),
    slab_position="random",
    tilt_deg=(0.0, 10.0),
    voxel_orders=("LPS", "RAS", "LAS", "RPS", "LPI", "RAI"),
    head_scale=(0.88, 1.12),
    warp_mm=(0.0, 2.5),
    gm_wm_contrast=(0.03, 0.22),
    p_gm_brighter=0.6,
    csf=(0.55, 1.2),
    iron=(0.2, 0.7),
    texture=(0.0, 0.04),
    gamma=(0.7, 1.4),
    snr=(12.5, 60.0),
    bias_strength=(0.0, 2.0),
    blur_voxels=(0.2, 0.9),
    air_artefact_extent=(0.7, 1.3),
    skull_base_spots=(0, 6),
    vein_density=(0.6, 1.6),
    cmb_diameter_mm=(2.0, 10.0),
    cmb_depth=(0.55, 0.98),
    p_next_to_vein=0.35,
    vein_gap_mm=(0.5, 2.5),
    p_irregular=0.2,
    irregularity=(0.05, 0.15),
    p_elongated=0.35,
    elongation=(1.1, 1.9),
    p_clustered=0.0,
)
