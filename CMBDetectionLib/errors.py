"""Every exception the engine raises on purpose, in one module that any stage may import (it imports nothing).

Each message says what is wrong and what to do. All derive from :class:`CMBDetectionError`, so a front end can
catch the engine's own failures in one clause; most also derive from the built-in class callers caught before
(``ValueError`` for bad input, ``RuntimeError`` for a step that failed), so existing ``except`` clauses still hold.

>>> try:
...     raise VolumeError("scan.nii.gz: 2D image; give a 3D SWI volume.")
... except ValueError as exc:
...     isinstance(exc, CMBDetectionError), str(exc)
(True, 'scan.nii.gz: 2D image; give a 3D SWI volume.')
"""


class CMBDetectionError(Exception):
    """Base of the engine's exceptions."""


class DetectionCancelled(CMBDetectionError):
    """Raised when the caller's ``cancel()`` returned True; nothing is returned or written."""


class VolumeError(CMBDetectionError, ValueError):
    """An input volume cannot be used; the message names the file, the problem and what to do."""


class ModelError(CMBDetectionError, ValueError):
    """A model folder is missing, incomplete or corrupted; the message says what to do."""


class BackendUnavailable(CMBDetectionError, ValueError):
    """An inference backend cannot run here; the message says why and what to do."""


class RegistrationError(CMBDetectionError, RuntimeError):
    """Registration to MNI space failed; the message says what failed and what to do."""


class NoLesionHere(CMBDetectionError, ValueError):
    """No dark blob under the placed point (growing a lesion from a click); the message says what to do."""


class CLIError(CMBDetectionError, RuntimeError):
    """A problem the user of a command-line tool can fix; printed as one line, exit code 1."""


class OutputError(CMBDetectionError, RuntimeError):
    """Result files could not be written (disk full, no permission, folder busy); earlier results are kept."""


class OutputFileError(CMBDetectionError, ValueError):
    """A result file cannot be read back: missing, damaged, of another schema or on another grid."""


class PacsError(CMBDetectionError, RuntimeError):
    """The PACS (Orthanc) cannot be reached, refused a request or answered something unusable; says what to do."""


class CohortError(CMBDetectionError, ValueError):
    """A cohort cannot be listed (``cmb-cohort``'s INPUT or OUT): the message names the path and what to do."""


def one_line(exc: BaseException) -> str:
    """What went wrong, in one line, as every front end reports it: an ``OSError`` as ``path: reason; what to do``,
    a message of several lines (ITK's) joined, and an unexpected exception (a bug) with its type's name.

    >>> one_line(PermissionError(13, "Permission denied", "/data/out"))
    '/data/out: Permission denied; check the path and its permissions, or choose another one.'
    >>> one_line(OSError(28, "No space left on device"))
    'No space left on device; check the path and its permissions, or choose another one.'
    >>> one_line(UnicodeDecodeError("utf-8", b"\\xff", 0, 1, "invalid start byte"))
    "a file is not UTF-8 text ('utf-8' codec can't decode byte 0xff in position 0: invalid start byte); give the file in
    the expected format."
    >>> one_line(RuntimeError("Exception thrown in SimpleITK ReadImage:\\n  itk::ERROR: cannot read x"))
    'Exception thrown in SimpleITK ReadImage: itk::ERROR: cannot read x'
    >>> one_line(KeyError("threshold"))
    "KeyError: 'threshold'"
    """
    if isinstance(exc, OSError) and not isinstance(exc, CMBDetectionError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}; check the path and its permissions, or choose another one."
    if isinstance(exc, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({exc}); give the file in the expected format."
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    # The engine's errors, bad values, the OS and ITK say what failed; anything else is a bug, named by its type.
    expected = isinstance(exc, (CMBDetectionError, ValueError, OSError, RuntimeError))
    return text if expected else f"{type(exc).__name__}: {text}"
