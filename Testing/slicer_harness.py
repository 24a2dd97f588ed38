"""A headless 3D Slicer scene for tests: real MRML and module logics from ``slicer-core``, no Qt.

Wires the pieces the Slicer application normally wires (see trame-slicer's ``SlicerApp`` for the same order):
scene -> application logic (with default colour nodes) -> module logics, each given the share directory,
application logic and scene and registered under the name C++ looks it up by. Then ``slicer.mrmlScene`` and a
``slicer.modules.<name>.logic()`` namespace are set so that unmodified ``slicer.util`` functions work.

>>> harness = SlicerHarness.create()          # doctest: +SKIP
>>> harness.scene.GetNumberOfNodes() > 0      # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import vtk

slicer = pytest.importorskip("slicer", reason="slicer-core (PyPI) is needed for the headless Slicer tests")

# Only the terminology entries our segments use: Slicer's shipped files are not part of slicer-core, and the
# logic logs errors at start-up when its share folder holds none. Codes as in Slicer's General Anatomy list.
_GENERAL_ANATOMY = {
    "SegmentationCategoryTypeContextName": "Segmentation category and type - 3D Slicer General Anatomy list",
    "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/segment-context-schema.json#",
    "SegmentationCodes": {
        "Category": [
            {
                "CodingSchemeDesignator": "SCT",
                "CodeValue": "49755003",
                "CodeMeaning": "Morphologically Altered Structure",
                "showAnatomy": "true",
                "Type": [
                    {
                        "CodingSchemeDesignator": "SCT",
                        "CodeValue": "50960005",
                        "CodeMeaning": "Hemorrhage",
                        "3dSlicerLabel": "bleeding",
                        "recommendedDisplayRGBValue": [188, 65, 28],
                    }
                ],
            }
        ]
    },
}
_ANATOMIC_REGIONS = {
    "AnatomicContextName": "DICOM Master Anatomic Regions",
    "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/anatomic-context-schema.json#",
    "AnatomicCodes": {
        "AnatomicRegion": [{"CodingSchemeDesignator": "SCT", "CodeValue": "12738006", "CodeMeaning": "Brain"}]
    },
}
_TERMINOLOGY_FILES = {
    "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.term.json": _GENERAL_ANATOMY,
    "SegmentationCategoryTypeModifier-DICOM-Master.term.json": {
        **_GENERAL_ANATOMY, "SegmentationCategoryTypeContextName": "DICOM Master List"},
    "AnatomicRegionAndModifier-DICOM-Master.term.json": _ANATOMIC_REGIONS,
}


def _write_terminologies(share: Path) -> Path:
    folder = share / "terminologies"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in _TERMINOLOGY_FILES.items():
        (folder / name).write_text(json.dumps(content))
    return folder


@dataclass
class SlicerHarness:
    """A scene plus the module logics registered on it, and the ``slicer`` globals pointing at them."""

    scene: Any
    app_logic: Any
    logics: dict[str, Any]
    _share: tempfile.TemporaryDirectory = field(repr=False)
    _observers: list[int] = field(default_factory=list, repr=False)

    @classmethod
    def create(cls) -> SlicerHarness:
        share = tempfile.TemporaryDirectory(prefix="cmb-slicer-share-")
        terminology_dir = _write_terminologies(Path(share.name))
        scene = slicer.vtkMRMLScene()
        app_logic = slicer.vtkSlicerApplicationLogic()
        app_logic.SetMRMLScene(scene)
        app_logic.GetColorLogic().SetMRMLScene(scene)
        app_logic.GetColorLogic().AddDefaultColorNodes()
        logics = {"Colors": app_logic.GetColorLogic()}
        app_logic.SetModuleLogic("Colors", app_logic.GetColorLogic())
        # Order matters: Segmentations looks up Terminologies, and SubjectHierarchy must exist before data nodes.
        for name, logic_class, share_dir in (
            ("Terminologies", slicer.vtkSlicerTerminologiesModuleLogic, terminology_dir),
            ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic, None),
            ("Volumes", slicer.vtkSlicerVolumesLogic, None),
            ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic, None),
            ("Markups", slicer.vtkSlicerMarkupsLogic, None),
            ("Tables", slicer.vtkSlicerTablesLogic, None),
        ):
            logic = logic_class()
            if share_dir is not None:
                logic.SetModuleShareDirectory(str(share_dir))
            logic.SetMRMLApplicationLogic(app_logic)
            logic.SetMRMLScene(scene)
            app_logic.SetModuleLogic(name, logic)
            logics[name] = logic
        harness = cls(scene, app_logic, logics, share)
        harness._install_globals()
        harness._mirror_subject_hierarchy()
        return harness

    def _install_globals(self) -> None:
        """What the Slicer application provides: ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()``."""
        slicer.mrmlScene = self.scene
        slicer.modules = SimpleNamespace(
            **{name.lower(): SimpleNamespace(logic=(lambda logic=logic: logic)) for name, logic in self.logics.items()}
        )

    def _mirror_subject_hierarchy(self) -> None:
        """Add and remove subject-hierarchy items for data nodes, which the application does in a Qt plugin."""
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def on_added(_scene, _event, node=None):
            if isinstance(node, (slicer.vtkMRMLDisplayableNode, slicer.vtkMRMLTableNode)):
                if not node.GetHideFromEditors() and not shNode.GetItemByDataNode(node):
                    shNode.CreateItem(shNode.GetSceneItemID(), node)

        @vtk.calldata_type(vtk.VTK_OBJECT)
        def on_removed(_scene, _event, node=None):
            item = shNode.GetItemByDataNode(node) if node is not None else 0
            if item:
                shNode.RemoveItem(item, False, False)

        self._observers = [
            self.scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent, on_added),
            self.scene.AddObserver(slicer.vtkMRMLScene.NodeRemovedEvent, on_removed),
        ]

    def clear(self) -> None:
        """Remove every data node, keeping the logics and default nodes (between tests)."""
        self.scene.Clear(False)

    def close(self) -> None:
        for tag in self._observers:
            self.scene.RemoveObserver(tag)
        self.scene.Clear(True)
        self._share.cleanup()


MODULE_DIR = Path(__file__).resolve().parent.parent / "CMBDetection"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))  # the module's logic package, as Slicer puts it on the path


@pytest.fixture(scope="session")
def slicer_harness():
    """One headless scene for the whole session; tests clear it with ``harness.clear()``."""
    harness = SlicerHarness.create()
    yield harness
    harness.close()
