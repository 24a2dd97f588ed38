"""File stems of result files: safe on every file system, and distinct for every input of one run.

A stem keeps letters (any script), digits and ``. _ + -``; anything else (``:`` in DICOM-loaded Slicer names,
which Windows refuses, ``/``, spaces, bytes that are not UTF-8) becomes ``_``. Inputs whose stems clash
(``sub-01/SWI`` and ``sub-02/SWI``) get their parent folder's name in front; a clash that remains is refused
before any work.

>>> safe_stem("6: SWI Images")
'6_SWI_Images'
>>> distinct_stems(["/data/sub-01/SWI", "/data/sub-02/SWI", "/data/sub-03_swi.nii.gz"])
['sub-01_SWI', 'sub-02_SWI', 'sub-03_swi']
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from CMBDetectionLib.imageio.volumes import volume_stem

_UNSAFE = re.compile(r"[^\w.+-]+")
# Names Windows reserves for devices, with or without an extension.
_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def safe_stem(name: str) -> str:
    """``name`` as a file stem valid on Windows, macOS and Linux (never empty, never hidden).

    >>> safe_stem(".. /x?"), safe_stem("NUL"), safe_stem("")
    ('x', 'NUL_', 'volume')
    """
    stem = _UNSAFE.sub("_", name).strip("._")
    if _RESERVED.match(stem):
        stem += "_"
    return stem or "volume"


def distinct_stems(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """One stem per input, in order: its safe stem, or ``<parent folder>_<stem>`` where stems clash.

    Stems are compared ignoring case, as Windows and macOS compare file names. Raises ``ValueError`` naming the
    two inputs when they would still write the same files (``x.mha`` and ``x.nii.gz`` in one folder).
    """
    paths = [Path(os.fsdecode(p)) for p in inputs]
    stems = [safe_stem(volume_stem(p)) for p in paths]
    keys = [stem.casefold() for stem in stems]
    stems = [
        safe_stem(f"{path.resolve().parent.name}_{stem}") if keys.count(key) > 1 else stem
        for path, stem, key in zip(paths, stems, keys, strict=True)
    ]
    seen: dict[str, Path] = {}
    for path, stem in zip(paths, stems, strict=True):
        other = seen.setdefault(stem.casefold(), path)
        if other is not path:
            raise ValueError(_clash_message(other, path, stem))
    return stems


def _clash_message(first: Path, second: Path, stem: str) -> str:
    if first.resolve() == second.resolve():
        return f"{first} is given twice; name each input once."
    return (f"{first} and {second} would both write the result files {stem}_*; rename one of them or run them "
            "into separate output folders.")
