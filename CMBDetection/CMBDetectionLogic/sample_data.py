"""The demo SWI phantom as a Sample Data entry: where it is and its SHA256, which Sample Data checks on loading.

The file ships inside the engine (``CMBDetectionLib/data/demo_swi.nii.gz``, 11 known CMBs, seed 424308), so the
entry points at it with a ``file://`` URI and nothing is downloaded.

>>> demo_sample().checksum.startswith("SHA256:")     # doctest: +SKIP
True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import CMBDetectionLib

DEMO_FILE = Path(CMBDetectionLib.__file__).resolve().parent / "data" / "demo_swi.nii.gz"
#: of the shipped demo file (a test keeps it equal); a damaged or replaced copy fails Sample Data's check
DEMO_SHA256 = "1a99b993c9efaed31db20fe26e22f55ba2eeab8078d18357d7b1d85f4abb13d6"


@dataclass(frozen=True)
class SampleEntry:
    name: str
    uri: str
    file_name: str
    checksum: str  # "SHA256:<hex>", as Sample Data's ``checksums`` argument expects


def demo_sample(path: Path = DEMO_FILE) -> SampleEntry:
    """The Sample Data entry of the demo phantom at ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the demo volume is missing; reinstall the CMBDetection extension.")
    return SampleEntry("CMBDemoSWI", path.as_uri(), path.name, f"SHA256:{DEMO_SHA256}")
