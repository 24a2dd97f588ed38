"""The HTML reports from reviewed lesions and from cohort rows: content, escaping, embedded pictures."""

import base64
import re
from io import BytesIO

import numpy as np
import SimpleITK as sitk
from matplotlib.image import imread
from scipy import ndimage
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.cohort.table import COLUMNS
from CMBDetectionLib.lesions.extraction import lesions_from_labels
from CMBDetectionLib.outputs.files import OutputSet
from CMBDetectionLib.outputs.lesion_csv import LesionRecord
from CMBDetectionLib.reports.cohort_report import write_cohort_report
from CMBDetectionLib.reports.subject_report import SubjectReport, write_subject_report


def _pngs(html: str) -> list[np.ndarray]:
    return [imread(BytesIO(base64.b64decode(data)), format="png")
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def _reviewed_set():
    """Three detected CMBs of a synthetic subject; the rater rejected lesion 2."""
    image, mask, _ = synthetic_subject(seed=3, shape_kji=(12, 64, 64), n_cmbs=3)
    labels, _ = ndimage.label(sitk.GetArrayFromImage(mask))
    lesions = lesions_from_labels(labels, (labels > 0).astype(np.float32), image)
    records = [LesionRecord(lesion, accepted=lesion.label != 2) for lesion in lesions]
    label_map = np.where(labels == 2, 0, labels).astype(np.uint16)
    return OutputSet(image, label_map, records)


def test_subject_report_shows_the_reviewed_lesions(tmp_path):
    report = SubjectReport.from_output_set(_reviewed_set(), "sub-<01>", {"model_version": "0.6.0", "threshold": 0.03,
                                                                       "lesion_filter": True})
    html = write_subject_report(report, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "sub-&lt;01&gt;" in html and "sub-<01>" not in html
    assert 'id="cmb-1"' in html and 'id="cmb-3"' in html and 'id="cmb-2"' not in html
    assert "1 lesion(s) rejected in review" in html
    assert "MARS was not rated" in html and "No registration overlay" in html
    pictures = _pngs(html)
    assert len(pictures) == 1 + 2  # the montage and the two accepted lesions, no registration overlay
    montage = pictures[0]
    red = (montage[..., 0] > 0.9) & (montage[..., 1] < 0.4) & (montage[..., 2] < 0.4)
    assert red.sum() > 10, "the lesions are outlined in red on the montage"
    assert "<td>on</td>" in html and "0.03" in html  # provenance, flags shown as on/off


def test_cohort_report_lists_failures_escaped_and_links_subjects(tmp_path):
    rows = []
    for n, (status, count, snr) in enumerate([("done", 2, 20.0), ("skipped", 0, 21.0), ("done", 5, 19.5),
                                              ("done", 1, 20.5), ("done", 3, 4.0), ("failed", "", "")]):
        row = dict.fromkeys(COLUMNS, "")
        row.update(subject=f"sub-{n}", key=f"sub-{n}", status=status, n_lesions=count, snr=snr,
                   brain_coverage=0.95 if snr else "", error="<script>bad</script> file" if status == "failed" else "")
        rows.append(row)
    model = {"model_name": "cmb-unet", "model_version": "0.6.0"}
    html = write_cohort_report(rows, tmp_path, {"method": "unet", "threshold": None}, model).read_text(encoding="utf-8")
    assert "cmb-unet 0.6.0" in html
    assert "&lt;script&gt;bad&lt;/script&gt; file" in html and "<script>" not in html
    assert 'href="sub-0/report.html"' in html and 'href="sub-5/report.html"' not in html
    assert re.search(r'href="sub-4/report.html">sub-4</a></td><td>SNR 4\.0', html), "the SNR outlier is flagged"
    assert len(_pngs(html)) == 2  # the count histogram and the QC scatter (no lesion lists on disk)
