"""The module's widget (``CMBDetectionWidget`` in CMBDetection.py) driven like a user would: a run locks the volume
selector, a failed result load is shown and frees the panel, results go to the volume the run started on even
when another is picked or the parameter node goes away meanwhile.

Qt and the Slicer application are stand-ins (``widget_standins``); ``tryWithErrorDisplay`` there is Slicer's own
code, which shows the error and re-raises, so the lines after a failed block are skipped as in Slicer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from repo_paths import REPO_ROOT
from widget_standins import ModuleParent, ParameterNode, SlicerStandIns, Timer, Volume, loaded_module

MODULE_FILE = REPO_ROOT / "CMBDetection" / "CMBDetection.py"
IDLE_TEXT = "Detect microbleeds"


class FakeRun:
    """A background run on ``target``: halfway at the first poll, finished at the second."""

    def __init__(self, target: Volume, update: type) -> None:
        self.target, self.cancelled = target, False
        self._updates = [update(True, 0.5, "detecting", None), update(False, 1.0, "engine finished", 0)]

    def poll(self) -> Any:
        return self._updates.pop(0)

    def cancel(self) -> None:
        self.cancelled = True


class FakeLogic:
    """The logic calls the widget makes, recorded; ``load_error`` is what ``finish_background`` raises."""

    def __init__(self, parameter_node: ParameterNode, engine: SimpleNamespace) -> None:
        self.notify: Callable[[str], None] | None = None
        self.parameter_node, self._engine = parameter_node, engine
        self.load_error: Exception | None = None
        self.started_on: list[Volume] = []
        self.finished_on: list[Volume] = []
        self.results: dict[Volume, SimpleNamespace] = {}

    def getParameterNode(self) -> ParameterNode:
        return self.parameter_node

    def results_for(self, volume: Volume | None) -> SimpleNamespace | None:
        return self.results.get(volume)

    def would_overwrite(self, volume: Volume) -> bool:
        return False

    def start_background(self, volume: Volume, settings: Any, *, overwrite: bool = False, server: Any = None) -> FakeRun:
        self.started_on.append(volume)
        return FakeRun(volume, self._engine.RunUpdate)

    def finish_background(self, run: FakeRun) -> Any:
        self.finished_on.append(run.target)
        if self.load_error is not None:
            raise self.load_error
        name = run.target.name
        nodes = SimpleNamespace(**{kind: f"{kind} of {name}" for kind in ("segmentation", "points", "lesion_table",
                                                                          "mars_table")})
        self.results[run.target] = SimpleNamespace(nodes=nodes)
        return self._engine.RunOutcome(self._engine.RunStatus.DONE, f"3 lesions on {name}", self.results[run.target])


@dataclass
class Panel:
    widget: Any
    logic: FakeLogic
    fake: SlicerStandIns

    @property
    def ui(self) -> SimpleNamespace:
        return self.widget.ui

    @property
    def timer(self) -> Timer:
        (timer,) = self.fake.timers
        return timer

    def click_detect(self) -> None:
        self.ui.detectButton.emit("clicked(bool)")  # PythonQt passes only the arguments the slot takes

    def assert_idle(self) -> None:
        """The panel after a run, whatever its end: no progress bar, the Detect button back, the selector free."""
        assert not self.ui.progressBar.visible and not self.timer.active
        assert self.ui.detectButton.text == IDLE_TEXT
        assert self.ui.inputVolumeSelector.enabled
        assert self.fake.app.override_cursors == 0


@pytest.fixture
def panel(monkeypatch):
    fake = SlicerStandIns()
    with loaded_module(MODULE_FILE, fake) as module:
        from CMBDetectionLogic.background_run import RunUpdate
        from CMBDetectionLogic.dependencies import InstallOutcome
        from CMBDetectionLogic.logic import RunOutcome

        # The first-use install has its own tests (test_dependencies.py); here everything is installed.
        monkeypatch.setattr(module, "ensure_dependencies", lambda confirm: InstallOutcome(True))
        engine = SimpleNamespace(RunUpdate=RunUpdate, RunOutcome=RunOutcome, RunStatus=module.RunStatus)
        logic = FakeLogic(ParameterNode(module.CMBDetectionParameterNode), engine)
        widget = module.CMBDetectionWidget(ModuleParent(), logic=logic)
        widget.setup()
        yield Panel(widget, logic, fake)
        widget.cleanup()


@pytest.fixture
def volumes() -> tuple[Volume, Volume]:
    return Volume("swi-a"), Volume("swi-b")


def test_the_volume_selector_is_locked_while_a_run_goes(panel, volumes):
    first, _ = volumes
    panel.logic.parameter_node.inputVolume = first
    assert panel.ui.inputVolumeSelector.enabled and not panel.ui.progressBar.visible
    assert (panel.ui.detectButton.text, panel.ui.detectButton.enabled) == (IDLE_TEXT, True)

    panel.click_detect()
    assert panel.logic.started_on == [first]
    assert not panel.ui.inputVolumeSelector.enabled
    assert (panel.ui.detectButton.text, panel.ui.detectButton.enabled) == ("Cancel", True)
    assert panel.ui.progressBar.visible and panel.timer.active
    panel.logic.parameter_node.threshold = 0.2  # any parameter change redraws the panel: still locked
    panel.timer.timeout.emit()
    assert not panel.ui.inputVolumeSelector.enabled and panel.ui.progressBar.value == 50

    panel.timer.timeout.emit()
    panel.assert_idle()


def test_detect_is_greyed_out_with_the_reason_for_a_colour_volume(panel):
    panel.logic.parameter_node.inputVolume = Volume("rgb", components=3)
    assert not panel.ui.detectButton.enabled
    assert "not a 3D scalar" in panel.ui.detectButton.toolTip


def test_a_failed_result_load_is_shown_and_frees_the_panel(panel, volumes):
    first, _ = volumes
    panel.logic.parameter_node.inputVolume = first
    panel.logic.load_error = RuntimeError("lesions.csv is missing from the engine's output")
    panel.click_detect()
    panel.timer.timeout.emit()
    assert panel.ui.statusLabel.text == "detecting"

    with pytest.raises(RuntimeError, match="lesions.csv"):  # Slicer's tryWithErrorDisplay re-raises
        panel.timer.timeout.emit()
    assert panel.fake.shown_errors == [
        "Failed to load the detection results.\n\nlesions.csv is missing from the engine's output"]
    panel.assert_idle()
    assert panel.ui.detectButton.enabled

    panel.click_detect()  # and the user can try again
    assert panel.logic.started_on == [first, first]


def test_results_load_on_the_volume_the_run_started_on(panel, volumes):
    first, second = volumes
    panel.logic.parameter_node.inputVolume = first
    panel.click_detect()
    panel.logic.parameter_node.inputVolume = second  # e.g. from the Python console; the selector is locked
    panel.timer.timeout.emit()
    panel.timer.timeout.emit()

    assert panel.logic.finished_on == [first]
    assert panel.fake.slice_layers == [{"background": first, "fit": True}]
    assert panel.ui.statusLabel.text == "3 lesions on swi-a"
    assert panel.ui.lesionTableView.mrmlTable is None  # the selected volume has no results
    panel.assert_idle()
    panel.logic.parameter_node.inputVolume = first
    assert panel.ui.lesionTableView.mrmlTable == "lesion_table of swi-a"
    assert panel.ui.rejectButton.enabled and panel.ui.exportButton.enabled


@pytest.mark.parametrize("leave", ["switch module", "close scene"])
def test_results_still_load_after_the_parameter_node_went_away(panel, volumes, leave):
    first, _ = volumes
    panel.logic.parameter_node.inputVolume = first
    panel.click_detect()
    if leave == "switch module":
        panel.widget.exit()
    else:
        panel.fake.scene.InvokeEvent(panel.fake.scene.StartCloseEvent)
    panel.timer.timeout.emit()
    panel.timer.timeout.emit()  # no AttributeError on the missing parameter node

    assert panel.logic.finished_on == [first] and panel.fake.shown_errors == []
    panel.assert_idle()


def test_the_threshold_follows_the_method_and_the_filter(panel):
    node = panel.logic.parameter_node
    method = type(node.method)  # the module's Method enum
    assert (node.method, node.lesionFilter, node.threshold) == (method.UNET, True, 0.2)
    node.threshold = 0.1  # the user's own threshold stands while method and filter do
    node.redrawOutlines = False
    assert node.threshold == 0.1
    node.method = method.TWO_STAGE  # another model's scores: its own operating threshold
    assert node.threshold == 0.2
    node.lesionFilter = False  # the ResNet50's patch probability, as in the paper
    assert node.threshold == 0.5
    node.method = method.UNET
    assert node.threshold == 0.95
