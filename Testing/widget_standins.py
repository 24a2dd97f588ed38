"""Stand-ins for what a scripted module's widget imports from the 3D Slicer application (``slicer``, ``qt``,
``slicer.util``, ``slicer.ScriptedLoadableModule``, ...), so that ``CMBDetection.py`` loads and its widget runs
without Qt. ``vtk`` is the real one: the parameter node and the scene are real ``vtkObject``s, so observers fire
as in Slicer.

Where the widget's behaviour depends on it, a stand-in copies Slicer's code: ``tryWithErrorDisplay`` is
``Base/Python/slicer/util.py`` at tag v5.8.0 (unchanged at v5.10.0): it shows the error and then RE-RAISES, so
nothing after the ``with`` block runs. ``VTKObservationMixin`` keeps Slicer's rule of one observer per object,
event and method.
``loadUI`` reads the module's real ``.ui`` file, so the widget sees exactly the child widgets the panel has.

>>> fake = SlicerStandIns()
>>> with fake.util.tryWithErrorDisplay("Load failed.", waitCursor=True):
...     raise ValueError("no lesion table")
Traceback (most recent call last):
ValueError: no lesion table
>>> fake.shown_errors, fake.app.override_cursors
(['Load failed.\\n\\nno lesion table'], 0)
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import vtk


class Signal:
    """A Qt signal: ``connect`` slots, ``emit`` calls them in order. PythonQt prints a slot's exception to the
    console and goes on; here it reaches the emitter, so a test sees it."""

    def __init__(self) -> None:
        self._slots: list[Callable] = []

    def connect(self, slot: Callable) -> None:
        self._slots.append(slot)

    def emit(self, *args: Any) -> None:
        for slot in self._slots:
            slot(*args)


class WidgetStandIn:
    """Any child widget of the panel: the Qt properties the module reads and writes, and signals by signature."""

    def __init__(self, name: str) -> None:
        self.objectName = name
        self.text, self.toolTip, self.enabled, self.visible = "", "", True, True
        self.value, self.currentIndex = 0, 0
        self.mrmlTable = self.mrmlScene = None
        self.signals: dict[str, Signal] = {}

    def show(self) -> None:
        self.visible = True

    def hide(self) -> None:
        self.visible = False

    def connect(self, signature: str, slot: Callable) -> None:
        self.signals.setdefault(signature, Signal()).connect(slot)

    def emit(self, signature: str, *args: Any) -> None:
        """What the user's action does, e.g. ``emit("clicked(bool)")``; KeyError when the module never connected it."""
        self.signals[signature].emit(*args)

    def setMRMLTableNode(self, node: Any) -> None:
        self.mrmlTable = node

    def setMRMLScene(self, scene: Any) -> None:
        self.mrmlScene = scene

    def __repr__(self) -> str:
        return f"<{self.objectName}>"


class LoadedUi(WidgetStandIn):
    """The top widget ``slicer.util.loadUI`` returns, holding the named child widgets of the ``.ui`` file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path.stem)
        names = [w.get("name") for w in ElementTree.parse(path).getroot().iter("widget")]
        self.children = {name: WidgetStandIn(name) for name in names[1:]}  # the first is the top widget itself


class Layout:
    def __init__(self) -> None:
        self.widgets: list[Any] = []

    def addWidget(self, widget: Any) -> None:
        self.widgets.append(widget)


class Timer:
    """``qt.QTimer``: nothing fires by itself; a test calls ``timeout.emit()`` where Qt's event loop would."""

    def __init__(self) -> None:
        self.interval, self.active, self.timeout = 0, False, Signal()

    def setInterval(self, milliseconds: int) -> None:
        self.interval = milliseconds

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False


class App:
    """``slicer.app``: version, testing mode (off: errors are shown, as for a user) and the override cursor."""

    def __init__(self, version: tuple[int, int]) -> None:
        self.majorVersion, self.minorVersion = version
        self.override_cursors = 0

    def testingEnabled(self) -> bool:
        return False

    def setOverrideCursor(self, cursor: Any) -> None:
        self.override_cursors += 1

    def restoreOverrideCursor(self) -> None:
        self.override_cursors -= 1


class Scene(vtk.vtkObject):
    """``slicer.mrmlScene``: a real vtkObject with the scene's event names, so ``InvokeEvent`` reaches observers."""

    StartCloseEvent, EndCloseEvent, EndImportEvent = (vtk.vtkCommand.UserEvent + n for n in (1, 2, 3))

    def GetFirstNodeByClass(self, class_name: str) -> None:
        return None


class ParameterNode:
    """A ``@parameterNodeWrapper`` instance: typed fields with defaults, each assignment fires the node's
    ModifiedEvent (as writing a parameter does), observers go to a real vtkObject. Unknown fields raise."""

    def __init__(self, wrapper_class: type) -> None:
        fields = {name: getattr(wrapper_class, name, None) for name in wrapper_class.__annotations__}
        object.__setattr__(self, "_node", vtk.vtkObject())
        object.__setattr__(self, "_values", fields)
        object.__setattr__(self, "guis", [])

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"parameter node has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._values:
            raise AttributeError(f"parameter node has no field {name!r}")
        self._values[name] = value
        self._node.Modified()

    def connectGui(self, ui: Any) -> int:
        self.guis.append(ui)
        return len(self.guis)

    def disconnectGui(self, tag: int) -> None:
        self.guis[tag - 1] = None

    def AddObserver(self, *args: Any) -> int:
        return self._node.AddObserver(*args)

    def RemoveObserver(self, tag: int) -> None:
        self._node.RemoveObserver(tag)


class Volume:
    """A scalar volume node as the widget sees it: a name and image data with ``components`` per voxel."""

    def __init__(self, name: str, components: int = 1) -> None:
        self.name = name
        self._image = vtk.vtkImageData()
        self._image.SetDimensions(4, 4, 4)
        self._image.AllocateScalars(vtk.VTK_FLOAT, components)

    def GetImageData(self) -> vtk.vtkImageData:
        return self._image

    def __repr__(self) -> str:
        return f"<volume {self.name}>"


class VTKObservationMixin:
    """Slicer's mixin: one observer per (object, event, method), removed by the same triple or all at once."""

    def __init__(self) -> None:
        super().__init__()
        self._observations: dict[tuple[Any, int, Callable], tuple[Any, int]] = {}

    def addObserver(self, obj: Any, event: int, method: Callable, group: str = "none", priority: float = 0.0) -> None:
        if (obj, event, method) not in self._observations:
            self._observations[(obj, event, method)] = (obj, obj.AddObserver(event, method, priority))

    def removeObserver(self, obj: Any, event: int, method: Callable) -> None:
        found = self._observations.pop((obj, event, method), None)
        if found:
            obj.RemoveObserver(found[1])

    def removeObservers(self) -> None:
        for obj, tag in self._observations.values():
            obj.RemoveObserver(tag)
        self._observations.clear()


class SlicerStandIns:
    """The modules, plus what they record: errors shown, slice-view layer changes, saved settings."""

    def __init__(self, version: tuple[int, int] = (5, 10)) -> None:
        self.app = App(version)
        self.scene = Scene()
        self.shown_errors: list[str] = []
        self.slice_layers: list[dict[str, Any]] = []
        self.settings: dict[str, Any] = {}
        self.timers: list[Timer] = []
        self.util = self._util()
        self.qt = self._qt()
        self.slicer = _module("slicer", app=self.app, mrmlScene=self.scene, util=self.util)
        self.scripted = _module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
                                ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
                                ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
                                ScriptedLoadableModuleTest=ScriptedLoadableModuleTest)
        self.i18n = _module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
        self.wrapper = _module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
                               WithinRange=lambda low, high: (low, high))

    @property
    def modules(self) -> dict[str, ModuleType]:
        """What goes into ``sys.modules``."""
        return {"slicer": self.slicer, "slicer.util": self.util, "slicer.ScriptedLoadableModule": self.scripted,
                "slicer.i18n": self.i18n, "slicer.parameterNodeWrapper": self.wrapper, "qt": self.qt, "vtk": vtk}

    def _util(self) -> ModuleType:
        def errorDisplay(text: str, **kwargs: Any) -> None:
            self.shown_errors.append(text)

        @contextmanager
        def tryWithErrorDisplay(message: str | None = None, show: bool = True, waitCursor: bool = False) -> Iterator[None]:
            # Slicer v5.8.0 Base/Python/slicer/util.py, line for line (imports aside).
            try:
                if waitCursor:
                    self.app.setOverrideCursor(self.qt.Qt.WaitCursor)
                yield
                if waitCursor:
                    self.app.restoreOverrideCursor()
            except Exception as e:
                if waitCursor:
                    self.app.restoreOverrideCursor()
                if show and not self.app.testingEnabled():
                    if message is not None:
                        errorMessage = f"{message}\n\n{e}"
                    else:
                        errorMessage = str(e)
                    errorDisplay(errorMessage, detailedText=traceback.format_exc())
                raise

        def loadUI(path: str) -> LoadedUi:
            return LoadedUi(Path(path))

        return _module("slicer.util", errorDisplay=errorDisplay, tryWithErrorDisplay=tryWithErrorDisplay,
                       loadUI=loadUI, childWidgetVariables=lambda ui: SimpleNamespace(**ui.children),
                       setSliceViewerLayers=lambda **layers: self.slice_layers.append(layers),
                       VTKObservationMixin=VTKObservationMixin)

    def _qt(self) -> ModuleType:
        store, timers = self.settings, self.timers

        class QSettings:
            def value(self, key: str, default: Any = None) -> Any:
                return store.get(key, default)

            def setValue(self, key: str, value: Any) -> None:
                store[key] = value

        def QTimer() -> Timer:
            timers.append(Timer())
            return timers[-1]

        return _module("qt", QSettings=QSettings, QTimer=QTimer, Qt=SimpleNamespace(WaitCursor=3))


class ScriptedLoadableModule:
    """Base of the module description; the widget tests never make one."""


class ScriptedLoadableModuleLogic:
    """Base of the module logic; the widget tests inject a logic of their own."""


class ScriptedLoadableModuleTest:
    """Base of the self-test (unittest in Slicer); not run here."""


class ScriptedLoadableModuleWidget:
    """Given a parent, Slicer's base keeps it and its layout and leaves ``setup()`` to the caller."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__()
        self.moduleName = type(self).__name__.removesuffix("Widget")
        self.parent = parent
        self.layout = parent.layout()

    def setup(self) -> None:
        pass

    def resourcePath(self, filename: str) -> str:
        module_file = Path(sys.modules[type(self).__module__].__file__)
        return str(module_file.parent / "Resources" / filename)


class ModuleParent:
    """The module panel Slicer hands the widget: its layout, and whether the user is in the module."""

    def __init__(self) -> None:
        self.isEntered = True
        self._layout = Layout()

    def layout(self) -> Layout:
        return self._layout


@contextmanager
def loaded_module(path: Path, fake: SlicerStandIns) -> Iterator[ModuleType]:
    """The scripted module file ``path`` imported against the stand-ins. It and the packages beside it
    (``CMBDetectionLogic``) are imported afresh and dropped afterwards, and ``sys.modules`` and ``sys.path`` are
    put back, so no module bound to a stand-in ``slicer`` outlives the test."""
    ours = {path.stem} | {p.name for p in path.parent.iterdir() if (p / "__init__.py").is_file()}

    def own(name: str) -> bool:
        return name.split(".")[0] in ours

    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if own(name)}
    replaced = {name: sys.modules.get(name) for name in fake.modules}
    sys.modules.update(fake.modules)
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(path.parent))
        for name in [name for name in sys.modules if own(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
        for name, previous in replaced.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous


def _module(name: str, **attributes: Any) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attributes)
    return module
