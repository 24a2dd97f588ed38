"""The module's logic without Qt: run detection (blocking or in the background), show results, correct, export.

Both run paths end in :meth:`DetectionLogic.show_result`, the one function that turns a lesion list and label
map into MRML. A run that fails or is cancelled never reaches it, so earlier results stay as they were.
Detection, lesion growing and MARS location are injected (constructor arguments) so tests can pass fast fakes;
the defaults are the engine's.

>>> logic = DetectionLogic()                                                  # doctest: +SKIP
>>> outcome = logic.detect(volumeNode, DetectionSettings(threshold=0.6))      # doctest: +SKIP
>>> outcome.status, len(outcome.results.accepted_labels())                   # doctest: +SKIP
(<RunStatus.DONE: 'done'>, 7)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from CMBDetectionLib.results import Lesion

from .background_run import BackgroundDetection, CommandBuilder, engine_command
from .correction_sync import Counter, Grower, LesionResults, Locator, default_count_table
from .export import export_results
from .parameters import DetectionSettings
from .remote_run import RemoteDetection, ServerSettings
from .result_nodes import ResultNodes, create_result_nodes, set_provenance
from .scene_links import link, place_under_study, saved_results
from .tables import read_lesions
from .volume_conversion import volume_to_image

log = logging.getLogger(__name__)

#: ``CMBDetectionLib.pipeline.detect``'s signature
Detector = Callable[..., Any]


class RunStatus(Enum):
    DONE = "done"
    WOULD_OVERWRITE = "would overwrite corrections"
    CANCELLED = "cancelled"
    FAILED = "failed"
    DROPPED = "dropped: the input volume is gone"


@dataclass
class RunOutcome:
    status: RunStatus
    message: str = ""
    results: LesionResults | None = None


class CorrectionsWouldBeLost(RuntimeError):
    """Starting a run would replace results a rater has corrected; pass ``overwrite=True`` after asking."""


def done_message(count: int, provenance: dict[str, Any]) -> str:
    """The status line after a run: how many lesions, on which device, and why MARS is missing if it is.

    >>> done_message(3, {"device_used": "CUDAExecutionProvider", "mars_error": "registration failed"})
    '3 microbleed candidates found (ran on CUDAExecutionProvider). No MARS rating: registration failed'
    """
    where = provenance.get("device_used")
    message = f"{count} microbleed candidates found" + (f" (ran on {where})." if where else ".")
    if provenance.get("mars_error"):
        message += f" No MARS rating: {provenance['mars_error']}"
    return message


def _default_detector(image, **kwargs):
    from CMBDetectionLib.pipeline import detect

    return detect(image, **kwargs)


def _default_locator(image) -> Locator | None:
    """MARS location of added lesions from the engine's rater (registration runs once per volume, off the GUI thread)."""
    try:
        from CMBDetectionLib.mars.rating import MarsRater
    except ImportError:
        return None
    rater = MarsRater.from_image(image)
    return lambda centre_ras: rater.locate(centre_ras)


def _cancelled_error():
    try:
        from CMBDetectionLib.errors import DetectionCancelled

        return DetectionCancelled
    except ImportError:
        return ()


class DetectionLogic:
    """Runs detection on volume nodes and keeps one :class:`LesionResults` per input volume."""

    def __init__(
        self,
        detector: Detector = _default_detector,
        *,
        grow: Grower | None = None,
        locate_factory: Callable[[Any], Locator | None] | None = _default_locator,
        count_table: Counter = default_count_table,
        command: CommandBuilder = engine_command,
        notify: Callable[[str], None] = log.warning,
    ) -> None:
        self._detector = detector
        self._grow = grow
        self._locate_factory = locate_factory
        self._count_table = count_table
        self._command = command
        self.notify = notify
        self._results: dict[str, LesionResults] = {}

    # ---- results per volume --------------------------------------------------------------------------------
    def results_for(self, volume_node) -> LesionResults | None:
        results = self._results.get(volume_node.GetID()) if volume_node is not None else None
        if results is not None and results.nodes.segmentation.GetScene() is None:  # the user deleted the nodes
            results.stop_observing()
            del self._results[volume_node.GetID()]
            return None
        return results

    def would_overwrite(self, volume_node) -> bool:
        """True when the volume's current results hold corrections that a new run would replace."""
        results = self.results_for(volume_node)
        return results is not None and results.corrected

    def show_result(
        self, volume_node, lesions: list[Lesion], label_map: np.ndarray, provenance: dict[str, Any]
    ) -> LesionResults:
        """The one place a run becomes MRML: fill (or refill) the volume's four result nodes."""
        results = self.results_for(volume_node)
        if results is None:
            nodes = create_result_nodes(volume_node)
            place_under_study(nodes, volume_node)
            link(nodes, volume_node)
            results = self._track(nodes, volume_node)
        results.fill(lesions, label_map)
        set_provenance(results.nodes, provenance)
        return results

    def _track(self, nodes: ResultNodes, volume_node) -> LesionResults:
        results = LesionResults(nodes, volume_node, grow=self._grow, locate_factory=self._locate_factory,
                                count_table=self._count_table, notify=lambda message: self.notify(message))
        self._results[volume_node.GetID()] = results
        return results

    def relink(self, scene) -> int:
        """Take over the linked results of a loaded scene (``.mrb``) so they can be corrected and exported again;
        returns how many volumes' results were relinked. Volumes already tracked are left alone."""
        count = 0
        for volume_node, nodes in saved_results(scene):
            if self.results_for(volume_node) is not None:
                continue
            lesions, accepted, source = read_lesions(nodes.lesion_table)
            self._track(nodes, volume_node).restore_state(lesions, accepted, source)
            count += 1
        return count

    # ---- blocking run (scripts, tests) ---------------------------------------------------------------------
    def detect(
        self,
        volume_node,
        settings: DetectionSettings,
        *,
        overwrite: bool = False,
        progress: Callable[[float], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> RunOutcome:
        """Run detection in this process and show the result; corrected results are kept unless ``overwrite``."""
        if self.would_overwrite(volume_node) and not overwrite:
            return RunOutcome(RunStatus.WOULD_OVERWRITE, "the current results hold corrections; confirm to replace them.")
        image = volume_to_image(volume_node)
        try:
            result = self._detector(image, progress=progress, cancel=cancel, **settings.detector_kwargs())
        except _cancelled_error():
            return RunOutcome(RunStatus.CANCELLED, "detection cancelled; earlier results kept.", self.results_for(volume_node))
        except Exception as exc:  # any engine failure: report it and keep what was shown before
            log.exception("detection failed")
            return RunOutcome(RunStatus.FAILED, f"detection failed: {exc}", self.results_for(volume_node))
        provenance = {**settings.detector_kwargs(), **result.provenance}
        results = self.show_result(volume_node, result.lesions, result.label_map, provenance)
        reported = {**provenance, "mars_error": getattr(result, "mars_error", None)}
        return RunOutcome(RunStatus.DONE, done_message(len(result.lesions), reported), results)

    # ---- background run (the GUI) --------------------------------------------------------------------------
    def start_background(self, volume_node, settings: DetectionSettings, *, overwrite: bool = False,
                         server: ServerSettings | None = None) -> BackgroundDetection | RemoteDetection:
        """Start ``cmb-detect`` in another process, or on the detection ``server`` when given; poll the returned
        run, then call :meth:`finish_background`.

        The run remembers ``volume_node`` and its scene: its results go to that volume whatever is selected later.
        """
        if self.would_overwrite(volume_node) and not overwrite:
            raise CorrectionsWouldBeLost("the current results hold corrections; confirm to replace them.")
        image = volume_to_image(volume_node)
        run = (RemoteDetection(image, settings, server, target=volume_node) if server is not None
               else BackgroundDetection(image, settings, command=self._command, target=volume_node))
        run.start()
        return run

    def finish_background(self, run: BackgroundDetection) -> RunOutcome:
        """Load a finished run's files onto the volume it started on (or report why not); its temporary folder is
        removed. When that volume was removed or its scene closed meanwhile, the results are dropped."""
        volume_node = run.target
        try:
            if not run.target_present():
                return RunOutcome(RunStatus.DROPPED, "the input volume was removed or the scene closed while detection "
                                  "ran; its results were dropped. Run detection again on the volume.")
            if run.cancelled:
                return RunOutcome(RunStatus.CANCELLED, "detection cancelled; earlier results kept.", self.results_for(volume_node))
            try:
                lesions, label_map = run.outputs()
            except (RuntimeError, ValueError) as exc:
                return RunOutcome(RunStatus.FAILED, str(exc), self.results_for(volume_node))
            provenance = {**run.settings.detector_kwargs(), "runner": "cmb-detect", **run.reported_device()}
            results = self.show_result(volume_node, lesions, label_map, provenance)
            return RunOutcome(RunStatus.DONE, done_message(len(lesions), provenance), results)
        finally:
            run.cleanup()

    # ---- corrections and export ----------------------------------------------------------------------------
    def reject(self, volume_node, label: int) -> None:
        self._require(volume_node).reject(label)

    def add_lesion_at(self, volume_node, centre_ras: tuple[float, float, float]) -> Lesion:
        return self._require(volume_node).add_lesion_at(centre_ras)

    def jump_to(self, volume_node, label: int) -> None:
        """Centre the slice views on a lesion."""
        import slicer

        r, a, s = self._require(volume_node).lesions[label].centre_ras
        slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)

    def export(self, volume_node, folder: str | os.PathLike, stem: str | None = None) -> dict[str, Path]:
        return export_results(self._require(volume_node), folder, stem)

    def _require(self, volume_node) -> LesionResults:
        results = self.results_for(volume_node)
        if results is None:
            raise ValueError("no detection results for this volume yet; run detection first.")
        return results
