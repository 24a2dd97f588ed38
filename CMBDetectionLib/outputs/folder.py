"""Output folder rules: one writer at a time, and a stem's files replaced as a whole set or not at all.

- **Lock**: a writer holds an exclusive lock on ``.cmb-outputs.lock`` in the folder (``fcntl.flock``; ``msvcrt``
  on Windows, where the file then stays) and removes the file when done. The operating system drops the lock
  when the process dies, so a killed run never leaves it stuck. A second writer waits for it up to
  :data:`LOCK_TIMEOUT_S`, then gives up with an ``OutputError``.
- **Staging**: the new files are written into ``.cmb-staging-<stem>/`` inside the folder (same file system, so
  moving is a rename) and flushed to disk. A failure or kill while writing leaves the earlier files untouched.
- **Install**: every earlier file of the stem moves into ``.cmb-previous-<stem>/``, the new ones move into
  place, then the earlier ones are deleted. Files of the stem that the new run does not write (``S_mars.csv``
  after a ``--no-mars`` re-run) are therefore gone, never left stale beside the new ones. An error while moving
  puts the earlier set back; after a kill while moving, the next writer into the folder puts it back.

>>> import tempfile, pathlib
>>> folder = output_folder(pathlib.Path(tempfile.mkdtemp()) / "out")
>>> with folder_lock(folder), staging_folder(folder, "S") as staging:
...     _ = (staging / "S_a.txt").write_text("new")
...     install(folder, "S", [staging / "S_a.txt"], [folder / "S_a.txt", folder / "S_b.txt"])
>>> sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)
['S_a.txt']
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from CMBDetectionLib.errors import OutputError

LOCK_NAME = ".cmb-outputs.lock"
LOCK_TIMEOUT_S = 120.0
STAGING = ".cmb-staging-"
PREVIOUS = ".cmb-previous-"
DISCARD = ".cmb-discard-"
#: Written into the previous-files folder once the earlier files are all in it: new files may be in place now.
INSTALLING = ".installing"


def output_folder(path: str | os.PathLike) -> Path:
    """The output folder, created if missing; ``OutputError`` when the path is a file or cannot be created."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder; give a folder for the results (created if missing).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the output folder ({exc.strerror}); choose another one.") from None
    return folder


@contextmanager
def folder_lock(folder: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the folder's writer lock, waiting up to ``timeout_s`` (default :data:`LOCK_TIMEOUT_S`) for it."""
    timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    path = folder / LOCK_NAME
    while not _try_lock(handle := open(path, "a+b")) or not _still_linked(handle, path):
        handle.close()
        if time.monotonic() >= deadline:
            raise OutputError(f"{folder}: another process has been writing results here for over "
                              f"{timeout_s:.0f} s; wait for it to finish or choose another output folder.")
        time.sleep(0.1)
    try:
        yield
    finally:
        if os.name != "nt":  # removed while still held, so a waiter sees it gone (Windows cannot delete open files)
            path.unlink(missing_ok=True)
        _unlock(handle)
        handle.close()


def _still_linked(handle: IO[bytes], path: Path) -> bool:
    """False when the lock file was removed by the holder we waited for: lock the new one instead."""
    if os.name == "nt":
        return True
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _try_lock(handle: IO[bytes]) -> bool:
    if os.name == "nt":
        import msvcrt

        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(handle: IO[bytes]) -> None:
    if os.name == "nt":
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def staging_folder(folder: Path, stem: str) -> Iterator[Path]:
    """A fresh, empty ``.cmb-staging-<stem>`` folder, removed with whatever is left in it on exit."""
    staging = folder / f"{STAGING}{stem}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install(folder: Path, stem: str, new_files: Iterable[Path], stem_files: Iterable[Path]) -> None:
    """Move ``new_files`` (staged) into ``folder`` in place of every existing file among ``stem_files``.

    Call with the folder's lock held. Either the new set is complete in place, or the earlier set is.
    """
    new_files = list(new_files)
    for path in new_files:
        _flush(path)
    previous = folder / f"{PREVIOUS}{stem}"
    previous.mkdir()
    try:
        for path in stem_files:
            if path.exists():
                os.replace(path, previous / path.name)
        (previous / INSTALLING).write_text("\n".join(path.name for path in new_files), encoding="utf-8")
        _flush(previous)
        for path in new_files:
            os.replace(path, folder / path.name)
    except OSError:
        _put_back(previous, folder)
        raise
    discard = folder / f"{DISCARD}{stem}"
    os.replace(previous, discard)  # one rename ends the install: from here on the new set stands
    shutil.rmtree(discard, ignore_errors=True)


def recover_interrupted(folder: Path) -> None:
    """Undo what a killed writer left (call with the lock held): put earlier sets back, delete half-written files."""
    for previous in folder.glob(f"{PREVIOUS}*"):
        _put_back(previous, folder)
    for leftover in (*folder.glob(f"{STAGING}*"), *folder.glob(f"{DISCARD}*")):
        shutil.rmtree(leftover, ignore_errors=True)


def _put_back(previous: Path, folder: Path) -> None:
    """Remove new files already moved in (when :data:`INSTALLING` says so), then move the earlier ones back."""
    installing = previous / INSTALLING
    if installing.exists():
        for name in filter(None, installing.read_text(encoding="utf-8").split("\n")):
            (folder / name).unlink(missing_ok=True)
        installing.unlink()
    for path in previous.iterdir():
        os.replace(path, folder / path.name)
    previous.rmdir()


def _flush(path: Path) -> None:
    """Push a file's (or, off Windows, a folder's) content to disk before it is renamed into place."""
    if os.name == "nt" and path.is_dir():
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
