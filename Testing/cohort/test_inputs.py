"""Listing a cohort's subjects from a BIDS dataset, a folder of volumes and DICOM folders, or a CSV."""

from pathlib import Path

import pytest

from CMBDetectionLib.cohort.inputs import list_subjects
from CMBDetectionLib.errors import CohortError


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_bids_subjects_sessions_and_suffixes(tmp_path):
    _touch(tmp_path, "sub-01/anat/sub-01_swi.nii.gz", "sub-01/anat/sub-01_T1w.nii.gz",
           "sub-02/ses-1/anat/sub-02_ses-1_T2starw.nii.gz", "sub-02/ses-2/anat/sub-02_ses-2_swi.nii.gz",
           "sub-02/ses-2/anat/sub-02_ses-2_part-phase_swi.nii.gz",
           "sub-03/anat/sub-03_run-1_swi.nii.gz", "sub-03/anat/sub-03_run-2_swi.nii.gz", "participants.tsv")
    subjects = list_subjects(tmp_path)
    assert [(s.subject, s.session, s.key) for s in subjects] == [
        ("sub-01", "", "sub-01"), ("sub-02", "ses-1", "sub-02_ses-1"), ("sub-02", "ses-2", "sub-02_ses-2"),
        ("sub-03_run-1", "", "sub-03_run-1"), ("sub-03_run-2", "", "sub-03_run-2")]
    assert subjects[1].path.name == "sub-02_ses-1_T2starw.nii.gz"


def test_folder_of_volumes_and_dicom_folders_leaves_out_the_output(tmp_path):
    _touch(tmp_path, "a_swi.nii.gz", "b.nrrd", "notes.txt", "dicom_c/1.dcm", ".hidden/x.dcm", "out/report.html")
    subjects = list_subjects(tmp_path, output=tmp_path / "out")
    assert [(s.key, s.path.name) for s in subjects] == [("a_swi", "a_swi.nii.gz"), ("b", "b.nrrd"),
                                                        ("dicom_c", "dicom_c")]


def test_csv_with_relative_paths(tmp_path):
    _touch(tmp_path, "data/x.nii.gz")
    (tmp_path / "list.csv").write_text("subject,session,path\nP1,baseline,data/x.nii.gz\nP2,,/abs/y.nii.gz\n")
    subjects = list_subjects(tmp_path / "list.csv")
    assert [(s.key, s.path) for s in subjects] == [("P1_baseline", tmp_path / "data/x.nii.gz"),
                                                   ("P2", Path("/abs/y.nii.gz"))]


@pytest.mark.parametrize("content, message", [
    ("name,file\na,b\n", "column(s) path, subject missing"),
    ("subject,path\na,x.nii.gz\nA,y.nii.gz\n", "would both write into the folder"),
    ("subject,path\n,x.nii.gz\n", "line 2: empty subject or path"),
])
def test_bad_csv_is_one_line_error(tmp_path, content, message):
    (tmp_path / "list.csv").write_text(content)
    with pytest.raises(CohortError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        list_subjects(tmp_path / "list.csv")
    assert "\n" not in str(error.value)


def test_empty_or_missing_input_is_refused(tmp_path):
    with pytest.raises(CohortError, match="no SWI volumes found"):
        list_subjects(tmp_path)
    with pytest.raises(CohortError, match="not a folder or a .csv file"):
        list_subjects(tmp_path / "missing")
