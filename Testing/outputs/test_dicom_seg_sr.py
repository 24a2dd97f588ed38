"""DICOM in, DICOM out: ``cmb-detect`` on a DICOM series writes a SEG and a TID 1500 SR that highdicom reads back,
that hold the same lesions as the label map and the lesion CSV, reference the source series, and that the
standard's validator (``dciodvfy``, Debian's dicom3tools, installed by ``.ci/run``) passes without error.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_dicom import PATIENT, STUDY, write_mr_series

from CMBDetectionLib.cli.detect import demo_volume, main
from CMBDetectionLib.errors import OutputFileError
from CMBDetectionLib.imageio.volumes import read_volume_and_headers
from CMBDetectionLib.outputs.dicom_outputs import dicom_writers
from CMBDetectionLib.outputs.dicom_seg import make_segmentation, read_dicom_seg
from CMBDetectionLib.outputs.dicom_source import DicomSource
from CMBDetectionLib.outputs.dicom_sr import read_dicom_sr
from CMBDetectionLib.outputs.lesion_csv import read_lesions_csv
from CMBDetectionLib.outputs.lesion_mask import read_lesion_mask


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The demo phantom written as a DICOM series, and cmb-detect's outputs for it (one detection per module)."""
    root = tmp_path_factory.mktemp("dicom_run")
    write_mr_series(sitk.ReadImage(str(demo_volume())), root / "swi", "SWI demo")
    assert main([str(root / "swi"), "-o", str(root / "out"), "-q"]) == 0
    return {"series": root / "swi", "out": root / "out", "datasets": read_volume_and_headers(root / "swi")[1]}


def dciodvfy_errors(path) -> list[str]:
    """The lines of ``dciodvfy``'s report on ``path`` that are errors (warnings are not)."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        pytest.fail("dciodvfy is not installed: run `apt-get install dicom3tools` (.ci/run installs it).")
    report = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]


def test_seg_holds_the_label_map_voxels(run):
    label_map = read_lesion_mask(run["out"] / "swi_cmb.nii.gz")
    seg_labels, names = read_dicom_seg(run["out"] / "swi_cmb.seg.dcm", run["datasets"])
    assert label_map.max() > 0, "the demo phantom has CMBs; detection should find some"
    np.testing.assert_array_equal(seg_labels, label_map)
    assert names == {label: f"CMB {label}" for label in np.unique(label_map[label_map > 0]).tolist()}


def test_sr_has_one_group_per_csv_row_with_its_values(run):
    records = read_lesions_csv(run["out"] / "swi_lesions.csv")
    report = read_dicom_sr(run["out"] / "swi_cmb.sr.dcm")
    assert [lesion.name for lesion in report.lesions] == [f"CMB {r.lesion.label}" for r in records]
    for reported, record in zip(report.lesions, records, strict=True):
        lesion = record.lesion
        assert reported.diameter_mm == pytest.approx(lesion.diameter_mm, abs=1e-3)
        assert reported.volume_mm3 == pytest.approx(lesion.volume_mm3, abs=1e-3)
        assert reported.confidence == pytest.approx(lesion.max_probability, abs=1e-4)
        assert (reported.region, reported.side, reported.certainty) == (lesion.region, lesion.side, lesion.certainty)
    counts = {f"all {k}": sum(r.lesion.certainty == k for r in records) for k in ("definite", "possible")}
    assert {key: report.mars_counts[key] for key in counts} == counts and report.n_lesions == len(records)
    assert report.algorithm[0].startswith("CMBDetection unet") and report.algorithm[1]


def test_sr_groups_link_to_their_seg_segments(run):
    import highdicom as hd

    segmentation = hd.seg.segread(str(run["out"] / "swi_cmb.seg.dcm"))
    report = read_dicom_sr(run["out"] / "swi_cmb.sr.dcm")
    for lesion in report.lesions:
        description = segmentation.get_segment_description(lesion.segment_number)
        assert (description.segment_label, description.tracking_uid) == (lesion.name, lesion.tracking_uid)


def test_both_reference_the_source_series_study_and_patient(run):
    import pydicom

    source = run["datasets"][0]
    seg = pydicom.dcmread(run["out"] / "swi_cmb.seg.dcm")
    sr = pydicom.dcmread(run["out"] / "swi_cmb.sr.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    evidence = {series.SeriesInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence}
    assert source.SeriesInstanceUID in evidence
    for made in (seg, sr):
        assert made.StudyInstanceUID == source.StudyInstanceUID
        assert made.SeriesInstanceUID != source.SeriesInstanceUID
        for key, value in {**PATIENT, **STUDY}.items():
            if key != "StudyDescription":  # not part of the SEG/SR modules
                assert str(made.get(key)) == value, key


def test_seg_frames_lie_on_source_slices(run):
    import pydicom

    seg = pydicom.dcmread(run["out"] / "swi_cmb.seg.dcm")
    slices = {tuple(round(float(x), 3) for x in ds.ImagePositionPatient) for ds in run["datasets"]}
    frames = [tuple(round(float(x), 3) for x in frame.PlanePositionSequence[0].ImagePositionPatient)
              for frame in seg.PerFrameFunctionalGroupsSequence]
    assert frames and set(frames) <= slices


@pytest.mark.parametrize("name", ["swi_cmb.seg.dcm", "swi_cmb.sr.dcm"])
def test_dciodvfy_reports_no_error(run, name):
    assert dciodvfy_errors(run["out"] / name) == []


def test_no_lesion_gives_a_report_without_seg(run, tmp_path):
    datasets = run["datasets"]
    empty = np.zeros((len(datasets), datasets[0].Rows, datasets[0].Columns), np.uint8)
    writers = dicom_writers(DicomSource(datasets, {"method": "unet"}), empty, [], None)
    assert sorted(writers) == ["dicom_sr"]
    path = writers["dicom_sr"](tmp_path / "S_cmb.sr.dcm")
    report = read_dicom_sr(path)
    assert (report.lesions, report.n_lesions, report.mars_counts) == ([], 0, {})
    assert dciodvfy_errors(path) == []


def test_label_map_of_another_grid_is_refused(run):
    datasets = run["datasets"]
    with pytest.raises(ValueError, match="does not match DICOM series"):
        make_segmentation(np.ones((2, 3, 4), np.uint8), [], DicomSource(datasets, {}))


def test_a_file_that_is_not_a_seg_is_refused(run):
    with pytest.raises(OutputFileError, match="not a readable DICOM SEG"):
        read_dicom_seg(run["series"] / "slice_0000.dcm", run["datasets"])
