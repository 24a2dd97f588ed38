"""The Slicer module's files checked without Slicer: .ui widgets, slicer.util calls, CMake lists, no Qt in the logic."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from repo_paths import REPO_ROOT

ROOT = REPO_ROOT
MODULE = ROOT / "CMBDetection"
UI = MODULE / "Resources" / "UI" / "CMBDetection.ui"
MODULE_PY = MODULE / "CMBDetection.py"
LOGIC_DIR = MODULE / "CMBDetectionLogic"


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI).getroot().iter("widget")}


def test_every_widget_the_code_uses_is_in_the_ui():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_PY.read_text()))
    assert used, "the widget code uses no ui widgets?"
    assert used <= set(ui_widgets()), f"missing in the .ui: {sorted(used - set(ui_widgets()))}"


def test_bound_widgets_name_fields_of_the_parameter_node():
    tree = ast.parse(MODULE_PY.read_text())
    wrapper = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CMBDetectionParameterNode")
    fields = {n.target.id for n in wrapper.body if isinstance(n, ast.AnnAssign)}
    bound = {
        prop.find("string").text
        for widget in ui_widgets().values()
        for prop in widget.findall("property")
        if prop.get("name") == "SlicerParameterName"
    }
    assert bound == {"inputVolume", "method", "device", "threshold", "lesionFilter", "redrawOutlines"} and bound <= fields


def test_every_slicer_util_function_called_exists_in_slicer_util():
    util = pytest.importorskip("slicer.util")
    sources = [MODULE_PY, *LOGIC_DIR.glob("*.py")]
    called = {name for path in sources for name in re.findall(r"slicer\.util\.(\w+)", path.read_text())}
    assert {"arrayFromVolume", "updateSegmentBinaryLabelmapFromArray", "confirmYesNoDisplay"} <= called
    assert not [name for name in called if not hasattr(util, name)]


def test_the_logic_package_imports_no_qt():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import pkgutil, importlib, CMBDetectionLogic as p\n"
        "[importlib.import_module('CMBDetectionLogic.' + m.name) for m in pkgutil.iter_modules(p.__path__)]\n"
        "bad = [m for m in ('qt', 'ctk', 'PythonQt') if m in sys.modules]; assert not bad, bad"
    )
    completed = subprocess.run([sys.executable, "-c", code, str(MODULE)], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]


def test_module_cmake_lists_every_logic_file_and_resource():
    cmake = (MODULE / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"\$\{MODULE_NAME\}Logic/(\w+\.py)", cmake))
    assert listed == {p.name for p in LOGIC_DIR.glob("*.py")}
    for resource in re.findall(r"(Resources/\S+)", cmake):
        assert (MODULE / resource.replace("${MODULE_NAME}", "CMBDetection")).exists(), resource
    for needed in ("slicerMacroBuildScriptedModule", "WITH_GENERIC_TESTS", "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)",
                   "CMBDetectionLib/*.py", "models/*"):
        assert needed in cmake


def test_extension_cmake_follows_slicers_template():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    order = ["project(CMBDetection)", "EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS",
             "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS",
             "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(CMBDetection)",
             "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [cmake.index(item) for item in order]
    assert positions == sorted(positions)


def test_module_text_cites_both_papers():
    text = MODULE_PY.read_text()
    assert "Ali et al." in text and "Heliyon 2023" in text
    assert "Afzal, Khan, Lee" in text and "Transfer Learning-Based Approach to Detect Cerebral Microbleeds" in text


def test_requirements_never_touch_slicers_own_packages():
    sys.path.insert(0, str(MODULE))
    from packaging.requirements import Requirement

    from CMBDetectionLogic.dependencies import PROTECTED, load_requirements, missing_requirements

    names = {Requirement(r).name.lower() for r in load_requirements()}
    assert not names & {p.lower() for p in PROTECTED}
    assert missing_requirements(["numpy>=1", "no-such-package-cmb", "other-thing; python_version < '3'"]) == ["no-such-package-cmb"]


def test_detect_button_follows_the_run_state():
    sys.path.insert(0, str(MODULE))
    from CMBDetectionLogic.run_state import RunState, detect_button

    states = {state: detect_button(state) for state in RunState}
    assert states[RunState.RUNNING].text == "Cancel" and states[RunState.RUNNING].enabled
    for state in (RunState.NO_INPUT, RunState.NOT_SCALAR, RunState.CANCELLING):
        assert not states[state].enabled and states[state].tooltip
    assert states[RunState.READY].enabled


def test_default_thresholds_are_the_shipped_models_operating_thresholds():
    sys.path.insert(0, str(MODULE))
    from CMBDetectionLib.pipeline import default_threshold, lesion_filter_for
    from CMBDetectionLogic.parameters import DEFAULT_THRESHOLDS, METHODS, DetectionSettings

    assert set(DEFAULT_THRESHOLDS) == {(method, on) for method in METHODS for on in (True, False)}
    for (method, on), threshold in DEFAULT_THRESHOLDS.items():
        assert threshold == default_threshold(method, None, lesion_filter_for(method, None, on)), (method, on)
    settings = DetectionSettings()
    assert settings.threshold == DEFAULT_THRESHOLDS[(settings.method, settings.lesion_filter)]


def test_threshold_slider_spans_the_parameters_range_and_reaches_the_default():
    sys.path.insert(0, str(MODULE))
    from CMBDetectionLogic.parameters import DEFAULT_THRESHOLD

    slider = {p.get("name"): float(p.find("double").text) for p in ui_widgets()["thresholdSliderWidget"].findall("property")
              if p.find("double") is not None}
    within = re.search(r"threshold: Annotated\[float, WithinRange\(([\d.]+), ([\d.]+)\)\]", MODULE_PY.read_text())
    assert within and (slider["minimum"], slider["maximum"]) == (float(within[1]), float(within[2]))
    steps = (DEFAULT_THRESHOLD - slider["minimum"]) / slider["singleStep"]
    assert slider["minimum"] <= DEFAULT_THRESHOLD <= slider["maximum"] and abs(steps - round(steps)) < 1e-6
