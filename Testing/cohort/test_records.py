"""Completion records: a subject is skipped only while its input, settings, model and files are unchanged."""

import os

from CMBDetectionLib.cohort.records import fingerprint, new_record, read_record, stale_reason, write_record

SETTINGS = {"method": "unet", "threshold": None}
MODEL = {"model_name": "cmb-unet", "model_version": "0.6.0", "model_card_sha256": "abc"}


def _finished(tmp_path):
    source = tmp_path / "in.nii.gz"
    source.write_bytes(b"volume bytes")
    folder = tmp_path / "sub-01"
    folder.mkdir()
    (folder / "report.html").write_text("report")
    write_record(folder, new_record(fingerprint(source), SETTINGS, MODEL, {"n_lesions": 3}, ["report.html"]))
    return source, folder


def test_matching_record_is_current_and_keeps_the_row(tmp_path):
    source, folder = _finished(tmp_path)
    assert stale_reason(folder, source, SETTINGS, MODEL) is None
    assert read_record(folder)["summary"] == {"n_lesions": 3}


def test_changed_settings_model_or_missing_files_make_it_stale(tmp_path):
    source, folder = _finished(tmp_path)
    assert stale_reason(folder, source, {**SETTINGS, "threshold": 0.2}, MODEL) == "settings changed"
    assert stale_reason(folder, source, SETTINGS, {**MODEL, "model_version": "0.7.0"}) == "model changed"
    (folder / "report.html").unlink()
    assert stale_reason(folder, source, SETTINGS, MODEL) == "result files missing"


def test_input_content_decides_not_its_timestamp(tmp_path):
    source, folder = _finished(tmp_path)
    os.utime(source, ns=(1, 1))  # touched (copied back, restored from backup): same bytes
    assert stale_reason(folder, source, SETTINGS, MODEL) is None
    source.write_bytes(b"other bytes!")
    assert stale_reason(folder, source, SETTINGS, MODEL) == "input changed"


def test_damaged_record_means_redo(tmp_path):
    source, folder = _finished(tmp_path)
    (folder / "completion.json").write_text("{not json")
    assert read_record(folder) is None
    assert stale_reason(folder, source, SETTINGS, MODEL) == "not done yet"
