"""``report.html`` of one subject: what a rater checks before trusting the counts, in one offline file.

Sections: the counts; an axial montage with the lesions outlined and numbered; a gallery with each lesion
zoomed in three planes and its id, MARS region, side, diameter, confidence (the lesion score that was
thresholded) and definite/possible; the MARS table; QC (the template brain's outline carried onto the volume by
the MNI registration, SNR, brain coverage, warnings); provenance (input, model, version, method, threshold,
settings, date). ``cmb-cohort`` writes it from a detection, the Slicer module's Export from the corrected
lesions (:meth:`SubjectReport.from_output_set`); both through :func:`write_subject_report`.

>>> report = SubjectReport.from_result(detect(read_volume("sub-01_swi.nii.gz")), "sub-01")   # doctest: +SKIP
>>> write_subject_report(report, "out/sub-01/report.html")                                    # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from CMBDetectionLib import __version__
from CMBDetectionLib.mars.rating import CERTAINTIES, MARS_CATEGORIES
from CMBDetectionLib.reports import figures
from CMBDetectionLib.reports.html import cards, escape, image, page, shown, table, warnings, write_text_atomically
from CMBDetectionLib.reports.qc import QualityControl, quality_control
from CMBDetectionLib.results import DetectionResult, Lesion

REPORT_NAME = "report.html"
MAX_GALLERY = 60  # lesions zoomed in the gallery; beyond that a subject needs the viewer, not a page
_PROVENANCE = (("model", "model_name"), ("model version", "model_version"), ("method", "method"),
               ("threshold", "threshold"), ("3D false-positive filter", "lesion_filter"), ("outlines", "outlines"),
               ("device", "device"), ("inference backend", "backend"), ("detection seconds", "seconds"))


@dataclass
class SubjectReport:
    """What one subject's report shows. ``lesions`` are the accepted ones (``n_rejected`` counts the others);
    ``registration`` is the run's ``MniRegistration`` (None: no QC overlay)."""

    subject: str
    image: sitk.Image
    label_map: np.ndarray
    lesions: list[Lesion]
    mars_counts: list[dict[str, Any]] | None
    provenance: dict[str, Any]
    qc: QualityControl
    registration: Any = None
    source: str = ""
    n_rejected: int = 0
    created: str = field(default_factory=lambda: datetime.datetime.now().astimezone().isoformat(timespec="seconds"))

    @classmethod
    def from_result(cls, result: DetectionResult, subject: str, source: str = "",
                    qc: QualityControl | None = None) -> SubjectReport:
        """The report of a detection (``qc`` is measured here unless given)."""
        qc = qc or quality_control(result.reference, result.registration, result.mars_error, len(result.lesions))
        return cls(subject, result.reference, result.label_map, list(result.lesions), result.mars_counts,
                   dict(result.provenance), qc, result.registration, source)

    @classmethod
    def from_output_set(cls, files, subject: str, provenance: dict[str, Any], registration=None,
                        mars_error: str | None = None) -> SubjectReport:
        """The report of a reviewed set (``outputs.files.OutputSet``: rejected lesions are left out, added ones
        are in)."""
        accepted = files.accepted_lesions()
        qc = quality_control(files.reference, registration, mars_error, len(accepted))
        return cls(subject, files.reference, files.label_map, accepted, files.mars_counts, dict(provenance), qc,
                   registration, n_rejected=len(files.records) - len(accepted))


def _summary(report: SubjectReport) -> str:
    lesions = report.lesions
    values: list[tuple[str, Any]] = [("CMBs", len(lesions))]
    if report.mars_counts is not None:
        values += [(certainty, sum(les.certainty == certainty for les in lesions)) for certainty in CERTAINTIES]
        values += [(category, sum(les.category == category for les in lesions)) for category in MARS_CATEGORIES]
    note = f'<p class="note">{report.n_rejected} lesion(s) rejected in review are not shown or counted.</p>' \
        if report.n_rejected else ""
    return cards(values) + note


def _certainty_tag(certainty: str) -> str:
    return f'<span class="tag {escape(certainty)}">{escape(certainty)}</span>' if certainty else "not rated"


def _lesion_card(lesion: Lesion, png: bytes) -> str:
    rows = [("region", lesion.region.replace("_", " ") or "not rated"), ("side", lesion.side or "not rated"),
            ("diameter", f"{lesion.diameter_mm:.1f} mm"), ("volume", f"{lesion.volume_mm3:.1f} mm\u00b3"),
            ("confidence", f"{lesion.max_probability:.2f}"),
            ("centre (RAS mm)", ", ".join(f"{v:.1f}" for v in lesion.centre_ras))]
    cells = "".join(f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows)
    return (f'<div class="lesion" id="cmb-{lesion.label}"><b>CMB {lesion.label}</b> {_certainty_tag(lesion.certainty)}'
            f'{image(png, f"CMB {lesion.label} in three planes")}<table>{cells}</table></div>')


def _gallery(report: SubjectReport, view: figures.Prepared) -> str:
    if not report.lesions:
        return "<p>No lesions.</p>"
    shown = sorted(report.lesions, key=lambda les: -les.max_probability)[:MAX_GALLERY]
    views = figures.lesion_views(view, [les.label for les in shown])
    note = f'<p class="note">The {MAX_GALLERY} most confident of {len(report.lesions)} lesions.</p>' \
        if len(report.lesions) > MAX_GALLERY else '<p class="note">Most confident first.</p>'
    return note + '<div class="gallery">' + "".join(_lesion_card(les, views[les.label]) for les in shown) + "</div>"


def _mars_table(report: SubjectReport) -> str:
    """The count table in the layout it was given (``mars.rating.count_table``'s, or a front end's own), without
    the empty region rows of a ``total`` column."""
    if report.mars_counts is None:
        return "<p>MARS was not rated for this volume (see the warnings under Quality control).</p>"
    if not report.mars_counts:
        return "<p>No counts.</p>"
    columns = list(report.mars_counts[0])
    rows = [row for row in report.mars_counts if row.get("total", 1) or row.get("region") == "all"]
    note = '<p class="note">Regions without lesions are left out; S_mars.csv lists them all.</p>' \
        if len(rows) < len(report.mars_counts) else ""
    return table(columns, [[str(row[c]).replace("_", " ") for c in columns] for row in rows],
                 ["total" if row.get("region") == "all" else "" for row in rows]) + note


def _quality(report: SubjectReport, view: figures.Prepared) -> str:
    qc = report.qc
    figures_text = [("SNR", f"{qc.snr:.1f}" if qc.snr is not None else "unknown"),
                    ("brain coverage", f"{qc.coverage:.0%}" if qc.coverage is not None else "unknown"),
                    ("tissue contrast (registration check)",
                     f"{qc.tissue_contrast:.2f}" if qc.tissue_contrast is not None else "unknown")]
    overlay = ('<p>The MNI template brain (blue outline) as the registration placed it: it should follow the '
               'brain\'s edge. MARS regions come from this alignment.</p>'
               + image(figures.registration_overlay(view, report.registration), "registration overlay")) \
        if report.registration is not None else \
        "<p>No registration overlay: MARS was not rated, or its registration is not kept (a Slicer export).</p>"
    return (table(("measure", "value"), figures_text) + (warnings(qc.warnings) or "<p>No warnings.</p>") + overlay)


def _provenance(report: SubjectReport) -> str:
    rows = [("subject", report.subject), ("input", report.source or "(not recorded)")]
    rows += [(name, shown(report.provenance[key])) for name, key in _PROVENANCE if key in report.provenance]
    rows += [("engine", f"CMBDetectionLib {__version__}"), ("report written", report.created)]
    return table((), rows)


def render_subject_report(report: SubjectReport) -> str:
    """The whole report as one HTML document."""
    view = figures.prepare(report.image, report.label_map)
    body = (f"<h1>Cerebral microbleeds: {escape(report.subject)}</h1>"
            '<p class="note">Research software, not a medical device: every lesion needs a rater\'s check.</p>'
            + _summary(report)
            + "<h2>Axial montage</h2>"
            + image(figures.axial_montage(view), "axial montage")
            + '<p class="note">Radiological view (patient\'s right on the left); lesions outlined in red with their '
              "id; every slice holding a lesion centre is shown.</p>"
            + "<h2>Lesions</h2>" + _gallery(report, view)
            + "<h2>MARS counts</h2>" + _mars_table(report)
            + "<h2>Quality control</h2>" + _quality(report, view)
            + "<h2>Provenance</h2>" + _provenance(report))
    return page(f"CMB report {report.subject}", body)


def write_subject_report(report: SubjectReport, path: str | os.PathLike) -> Path:
    """Render the report and write it atomically to ``path``."""
    return write_text_atomically(render_subject_report(report), path)


def report_detection(result: DetectionResult, subject: str, source: str, folder: str | os.PathLike,
                     ) -> tuple[Path, QualityControl]:
    """QC a detection and write its ``report.html`` into ``folder`` (``cmb-cohort`` and ``cmb-serve``); returns the
    report's path and the QC, whose figures a cohort table also lists."""
    qc = quality_control(result.reference, result.registration, result.mars_error, len(result.lesions))
    report = SubjectReport.from_result(result, subject, source, qc)
    return write_subject_report(report, Path(folder) / REPORT_NAME), qc
