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
