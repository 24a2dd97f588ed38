"""``cmb-pacs`` against a real Orthanc: SWI series in, one SEG and one SR per series out, never twice; a broken
series is reported in one line and skipped while the others are processed."""

from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from synthetic_dicom import write_mr_series

from CMBDetectionLib.cli.detect import demo_volume
from CMBDetectionLib.cli.pacs import main
from CMBDetectionLib.pacs.orthanc_client import OrthancClient
from CMBDetectionLib.pacs.worker import DEFAULT_MATCH, PacsWorker, series_rule

STABLE_TIMEOUT_S = 30


def _small_volume() -> sitk.Image:
    return sitk.GetImageFromArray(np.arange(3 * 8 * 8, dtype=np.int16).reshape(3, 8, 8))


@pytest.fixture(scope="module")
def pacs(orthanc, tmp_path_factory):
    """Orthanc holding one study: the demo SWI, a one-slice "SWI" (broken: not a volume), a T1 and a SWI minIP."""
    root = tmp_path_factory.mktemp("pacs_series")
    demo = sitk.ReadImage(str(demo_volume()))
    swi = write_mr_series(demo, root / "swi", "SWI_Images")
    study = pydicom.dcmread(swi[0]).StudyInstanceUID
    broken = write_mr_series(demo[:, :, 30:31], root / "broken", "SWI broken", study, series_number=7)
    others = [*write_mr_series(_small_volume(), root / "t1", "T1 MPRAGE", study, series_number=3),
              *write_mr_series(_small_volume(), root / "minip", "SWI_mIP minIP", study, series_number=8)]
    client = OrthancClient(orthanc["url"], orthanc["username"], orthanc["password"])
    for path in (*swi, *broken, *others):
        client.upload(path)
    deadline = time.monotonic() + STABLE_TIMEOUT_S
    while not all(series["IsStable"] for series in client.all_series()):
        assert time.monotonic() < deadline, "Orthanc did not mark the uploaded series stable"
        time.sleep(0.5)
    uid = {name: pydicom.dcmread(files[0]).SeriesInstanceUID for name, files in (("swi", swi), ("broken", broken))}
    return {"client": client, "study": study, "uid": uid, "argv": [
        "--orthanc", orthanc["url"], "--username", orthanc["username"], "--password", orthanc["password"], "-q"]}


def _ours(client: OrthancClient) -> dict[str, list[dict]]:
    """Series made by cmb-pacs, by modality."""
    found: dict[str, list[dict]] = {}
    for series in client.all_series():
        if series["MainDicomTags"].get("Manufacturer") == "CMBDetection":
            found.setdefault(series["MainDicomTags"]["Modality"], []).append(series)
    return found


def test_once_twice_stores_one_seg_and_sr_and_reports_the_broken_series(pacs, capsys, tmp_path):
    from CMBDetectionLib.outputs.dicom_sr import read_dicom_sr

    assert main([*pacs["argv"], "--once"]) == 1
    first = capsys.readouterr()
    assert [line for line in first.out.splitlines() if line] == [line for line in first.out.splitlines()
                                                                 if pacs["uid"]["swi"] in line and "CMB(s)" in line]
    errors = [line for line in first.err.splitlines() if line.startswith("cmb-pacs: error:")]
    assert len(errors) == 1 and pacs["uid"]["broken"] in errors[0]

    assert main([*pacs["argv"], "--once"]) == 1  # the broken series is tried again; the SWI is not
    second = capsys.readouterr()
    assert second.out.strip() == "" and pacs["uid"]["broken"] in second.err

    client = pacs["client"]
    ours = _ours(client)
    assert sorted(ours) == ["SEG", "SR"] and len(ours["SEG"]) == len(ours["SR"]) == 1
    for series in (*ours["SEG"], *ours["SR"]):
        tags = client.instance_tags(series["Instances"][0])
        assert tags["StudyInstanceUID"] == pacs["study"]
    seg_tags = client.instance_tags(ours["SEG"][0]["Instances"][0])
    assert seg_tags["ReferencedSeriesSequence"][0]["SeriesInstanceUID"] == pacs["uid"]["swi"]
    report = read_dicom_sr(client.download_series(ours["SR"][0]["ID"], tmp_path)[0])
    assert report.n_lesions == len(report.lesions) == len(seg_tags["SegmentSequence"]) > 0


class _CountingClient(OrthancClient):
    """Records the instances whose tags are asked for."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.asked: list[str] = []

    def instance_tags(self, instance_id: str) -> dict:
        self.asked.append(instance_id)
        return super().instance_tags(instance_id)


def test_later_passes_do_not_ask_again_for_the_tags_of_stored_results(pacs, capsys, orthanc):
    main([*pacs["argv"], "--once"])  # the SWI gets its SEG and SR (when an earlier test has not stored them)
    client = _CountingClient(orthanc["url"], orthanc["username"], orthanc["password"])
    worker = PacsWorker(client, series_rule(DEFAULT_MATCH), detector=lambda image: pytest.fail("processed again"))
    worker.run_once(lambda outcome: None)
    ours = _ours(client)
    assert sorted(client.asked) == sorted(series["Instances"][0] for series in (*ours["SEG"], *ours["SR"]))
    client.asked.clear()
    assert worker.run_once(lambda outcome: None) == []  # the broken series waits for a change
    assert client.asked == []

def test_wrong_password_is_one_line_and_exit_1(pacs, capsys):
    argv = [arg if arg != pacs["argv"][5] else "wrong" for arg in pacs["argv"]]
    assert main([*argv, "--once"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 401" in err[0] and "--password" in err[0]


@pytest.mark.parametrize(("description", "matches"), [
    ("SWI_Images", True), ("Ax SWAN", True), ("T2* GRE", True), ("t2_star_axial", True),
    ("mIP_Images(SW)", False), ("mIP_Images SWI", False), ("SWI minIP", False), ("SWI phase", False),
    ("Pha_Images SWI", False),
    ("T1 MPRAGE", False), ("FLAIR", False),
])
def test_default_rule_takes_swi_and_t2star_magnitude(description, matches):
    assert bool(series_rule(DEFAULT_MATCH).search(description)) is matches
