"""Volume files of a folder keyed by subject, to pair images with masks, predictions and probability maps.

The engine's files name a subject's role by a suffix of the file stem: ``_swi`` (the volume), ``_cmb`` (a mask:
ground truth from ``cmb-phantom``, or a prediction from ``cmb-detect``, which writes ``<volume stem>_cmb``) and
``_prob`` (a probability map). Training pairs ``_swi`` with ``_cmb`` files; ``cmb-eval`` pairs ground truth
with predictions; both go through :func:`volumes_by_subject`.

>>> subject_key("sub-01_swi_cmb.nii.gz"), subject_key("sub-01_cmb.nrrd"), subject_key("sub-01_swi_prob.nii.gz")
('sub-01', 'sub-01', 'sub-01')
>>> strip_suffixes("sub-01_swi", ("_cmb", "_swi"))
'sub-01'
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from CMBDetectionLib.imageio.volumes import VOLUME_SUFFIXES, volume_stem

ROLE_SUFFIXES = ("_prob", "_cmb", "_swi")  # stripped in this order: sub-01_swi_cmb -> sub-01_swi -> sub-01


def strip_suffixes(stem: str, suffixes: Sequence[str]) -> str:
    """``stem`` without each of ``suffixes`` in turn, where it ends with it."""
    for suffix in suffixes:
        if suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem


def subject_key(path: str | os.PathLike) -> str:
    """The subject a volume file belongs to: its stem without the role suffixes :data:`ROLE_SUFFIXES`."""
    return strip_suffixes(volume_stem(path), ROLE_SUFFIXES)


def volumes_by_subject(
    folder: str | os.PathLike, suffix: str = "", strip: Sequence[str] | None = None
) -> dict[str, Path]:
    """Volume files directly in ``folder`` whose stem ends with ``suffix``, in name order, keyed by the stem
    without the ``strip`` suffixes (default: ``suffix`` alone, so ``sub-01_swi`` with ``"_swi"`` is ``sub-01``).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a_swi.nii.gz", "a_cmb.nii.gz", "a_swi_cmb.nrrd", "notes.txt"):
    ...     _ = (folder / name).write_text("")
    >>> {key: path.name for key, path in volumes_by_subject(folder, "_cmb").items()}
    {'a': 'a_cmb.nii.gz', 'a_swi': 'a_swi_cmb.nrrd'}
    >>> {key: path.name for key, path in volumes_by_subject(folder, "_cmb", ROLE_SUFFIXES).items()}  # last wins
    {'a': 'a_swi_cmb.nrrd'}
    """
    strip = (suffix,) if strip is None else strip
    files = [path for path in sorted(Path(folder).iterdir()) if path.name.lower().endswith(VOLUME_SUFFIXES)]
    return {strip_suffixes(volume_stem(p), strip): p for p in files if volume_stem(p).endswith(suffix)}
