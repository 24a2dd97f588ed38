"""3D Slicer module "CMB Detection": module description, widget and self-test.

Everything that does not need Qt lives in the ``CMBDetectionLogic`` package beside this file (tested headless
with ``slicer-core``); this file only wires it to the GUI.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from CMBDetectionLogic.support import unsupported_reason

# Checked before anything that needs a newer Python is imported: a clear message instead of a SyntaxError.
_UNSUPPORTED = unsupported_reason((slicer.app.majorVersion, slicer.app.minorVersion), sys.version_info[:2])
if _UNSUPPORTED:
    logging.error(_UNSUPPORTED)
    raise ImportError(_UNSUPPORTED)

from CMBDetectionLogic import CorrectionsWouldBeLost, DetectionLogic, DetectionSettings, Device, Method, RunStatus  # noqa: E402
from CMBDetectionLogic.dependencies import ensure_dependencies  # noqa: E402
from CMBDetectionLogic.parameters import DEFAULT_THRESHOLD, threshold_after_change  # noqa: E402
from CMBDetectionLogic.remote_run import ServerSettings  # noqa: E402
from CMBDetectionLogic.run_state import RunState, detect_button, input_state, method_note  # noqa: E402
from CMBDetectionLogic.sample_data import demo_sample  # noqa: E402

POLL_MS = 300
SERVER_INDEX = 1  # "Process on" choice: 0 this computer, 1 server
SERVER_URL_KEY, SERVER_TOKEN_KEY = "CMBDetection/ServerURL", "CMBDetection/ServerToken"


class CMBDetection(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CMB Detection")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["CMBDetection developers"]
        self.parent.helpText = _(
            "Detects cerebral microbleeds (CMBs) on susceptibility-weighted MRI (SWI) with a UNet (end to end) or a "
            "two-stage method (k-means candidates and a ResNet50 classifier), rates them with the Microbleed Anatomical "
            "Rating Scale (MARS) and lets a rater correct the result: reject lesions, add lesions at clicked points, "
            "edit region, side and certainty. Results are a segmentation, a point list and tables, exportable to files. "
            "Research use only; not a medical device."
        )
        self.parent.acknowledgementText = _(
            "Methods from: Ali et al., Deep learning-assisted IoMT framework for cerebral microbleed detection, "
            "Heliyon 2023; and Afzal, Khan, Lee, A Transfer Learning-Based Approach to Detect Cerebral Microbleeds, "
            "Computers, Materials &amp; Continua 2022. MARS: Gregoire et al., Neurology 2009."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData() -> None:
    """The demo SWI phantom (11 known CMBs) in the Sample Data module, checked by its SHA256."""
    import SampleData

    sample = demo_sample()
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="CMB Detection",
        sampleName=sample.name,
        uris=sample.uri,
        fileNames=sample.file_name,
        nodeNames=sample.name,
        checksums=sample.checksum,
        thumbnailFileName=None,
    )


@parameterNodeWrapper
class CMBDetectionParameterNode:
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    method: Method = Method.UNET
    device: Device = Device.AUTO
    threshold: Annotated[float, WithinRange(0.01, 0.99)] = DEFAULT_THRESHOLD
    lesionFilter: bool = True
    redrawOutlines: bool = True
    segmentation: slicer.vtkMRMLSegmentationNode
    lesionPoints: slicer.vtkMRMLMarkupsFiducialNode
    lesionTable: slicer.vtkMRMLTableNode
    marsTable: slicer.vtkMRMLTableNode


class CMBDetectionLogic(ScriptedLoadableModuleLogic, DetectionLogic):
    """Slicer's logic base (parameter node) plus the Qt-free detection logic."""

    def __init__(self, **kwargs) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        DetectionLogic.__init__(self, **kwargs)

    def getParameterNode(self):
        return CMBDetectionParameterNode(super().getParameterNode())


class CMBDetectionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None, logic: CMBDetectionLogic | None = None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = logic
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._thresholdChoice: tuple[str, bool] | None = None
        self._run = None
        self._cancelling = False
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CMBDetection.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logic or CMBDetectionLogic()
        self.logic.notify = self._showMessage
        self.ui.progressBar.hide()
        self._addServerChoice()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.ui.detectButton.connect("clicked(bool)", self.onDetectButton)
        self.ui.rejectButton.connect("clicked(bool)", self.onRejectButton)
        self.ui.addLesionButton.connect("clicked(bool)", self.onAddLesionButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.lesionTableView.connect("clicked(QModelIndex)", self.onLesionRowClicked)
        self.initializeParameterNode()

    def _addServerChoice(self) -> None:
        """Fill the server fields from Slicer's settings: the URL and token live there, never in the scene (a saved
        scene may be shared)."""
        settings = qt.QSettings()
        self.ui.serverUrlLineEdit.text = settings.value(SERVER_URL_KEY, "")
        self.ui.serverTokenLineEdit.text = settings.value(SERVER_TOKEN_KEY, "")
        self.ui.processOnComboBox.connect("currentIndexChanged(int)", self._onProcessOnChanged)
        self._onProcessOnChanged(self.ui.processOnComboBox.currentIndex)

    def _onProcessOnChanged(self, index: int) -> None:
        self.ui.serverUrlLineEdit.enabled = self.ui.serverTokenLineEdit.enabled = index == SERVER_INDEX

    def _server(self) -> ServerSettings | None:
        """The chosen server (saved to Slicer's settings), or None to run on this computer; ValueError if incomplete."""
        if self.ui.processOnComboBox.currentIndex != SERVER_INDEX:
            return None
        server = ServerSettings(self.ui.serverUrlLineEdit.text.strip(), self.ui.serverTokenLineEdit.text)
        settings = qt.QSettings()
        settings.setValue(SERVER_URL_KEY, server.url)
        settings.setValue(SERVER_TOKEN_KEY, server.token)
        return server

    def cleanup(self) -> None:
        if self._run is not None:
            self._run.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndImport(self, caller, event) -> None:
        """A loaded scene (.mrb) may hold earlier results: take them over so Reject, Add and Export work again."""
        if self.logic.relink(slicer.mrmlScene):
            self._updateGui()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        self._thresholdChoice = None  # a node's own threshold stands until its method or filter changes
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    # ---- one state -> button text, enabled, tooltip ---------------------------------------------------------
    def _state(self) -> RunState:
        if self._run is not None:
            return RunState.CANCELLING if self._cancelling else RunState.RUNNING
        return input_state(self._parameterNode.inputVolume if self._parameterNode else None)

    def _updateGui(self, caller=None, event=None) -> None:
        button = detect_button(self._state())
        self.ui.detectButton.text = button.text
        self.ui.detectButton.enabled = button.enabled
        self.ui.detectButton.toolTip = button.tooltip
        results = self.logic.results_for(self._parameterNode.inputVolume) if self._parameterNode else None
        self.ui.lesionTableView.setMRMLTableNode(results.nodes.lesion_table if results else None)
        self.ui.marsTableView.setMRMLTableNode(results.nodes.mars_table if results else None)
        for widget in (self.ui.rejectButton, self.ui.addLesionButton, self.ui.exportButton):
            widget.enabled = results is not None and self._run is None
        self._followThreshold()
        # A run's results belong to the volume it started on: no switching while it runs.
        self.ui.inputVolumeSelector.enabled = self._run is None
        note = method_note(self._parameterNode.method.value) if self._parameterNode else ""
        if note and self._run is None:
            self._showMessage(note)

    def _followThreshold(self) -> None:
        """Another method, or the filter switched, scores on another scale: show that choice's default threshold."""
        if self._parameterNode is None:
            return
        choice = (self._parameterNode.method.value, bool(self._parameterNode.lesionFilter))
        previous, self._thresholdChoice = self._thresholdChoice, choice
        threshold = threshold_after_change(previous, choice)
        if threshold is not None:
            self._parameterNode.threshold = threshold

    def _showMessage(self, message: str) -> None:
        self.ui.statusLabel.text = message

    # ---- running --------------------------------------------------------------------------------------------
    def _settings(self) -> DetectionSettings:
        p = self._parameterNode
        return DetectionSettings(p.method.value, p.device.value, float(p.threshold), bool(p.lesionFilter),
                                 bool(p.redrawOutlines))

    def onDetectButton(self) -> None:
        if self._run is not None:
            self._cancelling = True
            self._updateGui()
            self._run.cancel()
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start detection."), waitCursor=True):
            installed = ensure_dependencies(lambda text: slicer.util.confirmOkCancelDisplay(text, windowTitle=_("Install packages")))
            if installed.restart_for and slicer.util.confirmYesNoDisplay(
                _("Updated packages that Slicer had already loaded ({names}) work only after a restart. Restart Slicer now?")
                .format(names=", ".join(installed.restart_for))
            ):
                slicer.util.restart()
                return
            if not installed.ready:
                self._showMessage(installed.message)
                return
            volume = self._parameterNode.inputVolume
            overwrite = False
            if self.logic.would_overwrite(volume):
                if not slicer.util.confirmYesNoDisplay(_("Replace the corrected results of this volume with a new detection?")):
                    return
                overwrite = True
            try:
                self._run = self.logic.start_background(volume, self._settings(), overwrite=overwrite,
                                                        server=self._server())
            except (CorrectionsWouldBeLost, ValueError) as exc:
                self._showMessage(str(exc))
                return
            self._cancelling = False
            self.ui.progressBar.value = 0
            self.ui.progressBar.show()
            self._showMessage(_("Starting detection..."))
            self._timer.start()
            self._updateGui()

    def _poll(self) -> None:
        update = self._run.poll()
        if update.fraction is not None:
            self.ui.progressBar.value = int(100 * update.fraction)
        self._showMessage(update.message)
        if update.running:
            return
        self._timer.stop()
        run, self._run = self._run, None
        try:  # whatever happens while loading, the panel leaves the running state
            with slicer.util.tryWithErrorDisplay(_("Failed to load the detection results."), waitCursor=True):
                outcome = self.logic.finish_background(run)  # onto the volume the run started on
                self._showMessage(outcome.message)
                if outcome.status is RunStatus.DONE and self._parameterNode is not None:
                    nodes = outcome.results.nodes
                    self._parameterNode.segmentation = nodes.segmentation
                    self._parameterNode.lesionPoints = nodes.points
                    self._parameterNode.lesionTable = nodes.lesion_table
                    self._parameterNode.marsTable = nodes.mars_table
                    slicer.util.setSliceViewerLayers(background=run.target, fit=True)
        finally:
            self.ui.progressBar.hide()
            self._updateGui()

    # ---- corrections and export -----------------------------------------------------------------------------
    def _selectedLesion(self) -> int | None:
        index = self.ui.lesionTableView.currentIndex()
        if not index.isValid():
            return None
        return int(self.ui.lesionTableView.mrmlTableNode().GetCellText(index.row(), 0))

    def onLesionRowClicked(self, index) -> None:
        label = self._selectedLesion()
        if label is not None:
            self.logic.jump_to(self._parameterNode.inputVolume, label)

    def onRejectButton(self) -> None:
        label = self._selectedLesion()
        if label is None:
            self._showMessage(_("Select a lesion in the table first."))
            return
        self.logic.reject(self._parameterNode.inputVolume, label)

    def onAddLesionButton(self) -> None:
        """Place one point; the logic grows a lesion from the dark blob under it (see correction_sync)."""
        points = self.logic.results_for(self._parameterNode.inputVolume).nodes.points
        slicer.modules.markups.logic().SetActiveList(points)
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        interaction.SetPlaceModePersistence(0)
        interaction.SetCurrentInteractionMode(interaction.Place)
        self._showMessage(_("Click the centre of a dark spot in a slice view."))

    def onExportButton(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Export results to folder"))
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            paths = self.logic.export(self._parameterNode.inputVolume, folder)
            self._showMessage(_("Exported {count} files to {folder}.").format(count=len(paths), folder=folder))


class CMBDetectionTest(ScriptedLoadableModuleTest):
    """Detection -> three linked nodes -> corrections stay in sync -> export reloads. A fast stand-in detector
    (dark voxels) is injected so the test checks the module, not a model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_CMBDetection1()

    def test_CMBDetection1(self):
        self.delayDisplay("Starting the CMB Detection test")
        array = np.full((30, 40, 50), 100, np.float32)
        for k, j, i in [(5, 10, 10), (15, 20, 30), (24, 30, 40)]:
            array[k - 1 : k + 2, j - 1 : j + 2, i - 1 : i + 2] = 5
        volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "swi")
        volume.SetSpacing(0.8, 0.9, 1.5)
        slicer.util.updateVolumeFromArray(volume, array)

        def countSides(lesions):
            return [{"region": "all", "left": sum(x.side == "left" for x in lesions), "right": sum(x.side == "right" for x in lesions)}]

        # Only what Slicer ships (numpy, scipy, SimpleITK): the test runs before the engine's packages are installed.
        from CMBDetectionLogic.self_test_detector import dark_blob_detector

        logic = CMBDetectionLogic(detector=dark_blob_detector, locate_factory=None, count_table=countSides)
        outcome = logic.detect(volume, DetectionSettings(threshold=0.5))
        self.assertEqual(outcome.status, RunStatus.DONE)
        results = outcome.results
        self.assertEqual(results.nodes.segmentation.GetSegmentation().GetNumberOfSegments(), 3)
        self.assertEqual(results.nodes.points.GetNumberOfControlPoints(), 3)

        results.nodes.points.RemoveNthControlPoint(0)
        self.assertEqual(results.nodes.segmentation.GetSegmentation().GetNumberOfSegments(), 2)
        self.assertEqual(results.accepted_labels(), [2, 3])
        table = results.nodes.lesion_table
        table.SetCellText(0, table.GetColumnIndex("accepted"), "1")
        self.assertEqual(results.accepted_labels(), [1, 2, 3])
        self.assertEqual(logic.detect(volume, DetectionSettings(threshold=0.5)).status, RunStatus.WOULD_OVERWRITE)

        folder = tempfile.mkdtemp()
        paths = logic.export(volume, folder)
        reloaded = slicer.util.loadSegmentation(str(paths["segmentation"]))
        self.assertEqual(reloaded.GetSegmentation().GetNumberOfSegments(), 3)
        self.delayDisplay("Test passed")
