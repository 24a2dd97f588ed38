"""``OUT/cohort_report.html``: the cohort at a glance, from ``cohort.csv``'s rows and each subject's lesion list.

Sections: counts (subjects done, skipped, failed; CMBs); the distribution of CMBs per subject; lesions by MARS
region and side; QC outliers (a subject whose SNR or brain coverage lies far from the cohort's, judged by
:func:`robust_outliers`, or who has QC warnings); the failures with their errors; every subject with a link to
its ``report.html``; the settings and model.

>>> robust_outliers({"a": 20.0, "b": 21.0, "c": 19.5, "d": 20.5, "e": 4.0})
['e']
"""

from __future__ import annotations

import datetime
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from CMBDetectionLib.mars.regions import MARS_REGIONS
from CMBDetectionLib.outputs.lesion_csv import read_lesions_csv
from CMBDetectionLib.reports import figures
from CMBDetectionLib.reports.html import Html, cards, escape, image, page, shown, table, write_text_atomically

REPORT_NAME = "cohort_report.html"
OUTLIER_MADS = 3.5  # robust z-score (median absolute deviations) beyond which a subject's QC figure is an outlier


def robust_outliers(values: Mapping[str, float]) -> list[str]:
    """Names whose value lies more than :data:`OUTLIER_MADS` scaled MADs from the median (none under 5 values)."""
    if len(values) < 5:
        return []
    numbers = np.array(list(values.values()), float)
    median = np.median(numbers)
    mad = 1.4826 * np.median(np.abs(numbers - median)) or np.std(numbers) or 1.0
    return [name for name, value in values.items() if abs(value - median) / mad > OUTLIER_MADS]


def region_side_counts(rows: Sequence[dict[str, Any]], out_dir: Path) -> Counter:
    """Accepted lesions of the finished subjects by (region, side), from their ``*_lesions.csv``."""
    counts: Counter = Counter()
    for row in rows:
        if row["status"] == "failed":
            continue
        for path in (out_dir / row["key"]).glob("*_lesions.csv"):
            counts.update((r.lesion.region, r.lesion.side) for r in read_lesions_csv(path)
                          if r.accepted and r.lesion.region)
    return counts


def _number(value: Any) -> float | None:
    return None if value in ("", None) else float(value)


def _link(row: dict[str, Any]) -> Html:
    """The subject's name linking to its report (a failed subject has none)."""
    if row["status"] == "failed":
        return Html(escape(row["key"]))
    return Html(f'<a href="{escape(row["key"])}/report.html">{escape(row["key"])}</a>')


def _qc_section(finished: Sequence[dict[str, Any]]) -> str:
    snr = {r["key"]: v for r in finished if (v := _number(r["snr"])) is not None}
    coverage = {r["key"]: v for r in finished if (v := _number(r["brain_coverage"])) is not None}
    flagged: dict[str, list[str]] = {}
    for name in robust_outliers(snr):
        flagged.setdefault(name, []).append(f"SNR {snr[name]:.1f} (cohort median {np.median(list(snr.values())):.1f})")
    for name in robust_outliers(coverage):
        flagged.setdefault(name, []).append(f"brain coverage {coverage[name]:.0%}")
    for row in finished:
        if row["warnings"]:
            flagged.setdefault(row["key"], []).append(row["warnings"])
    by_key = {row["key"]: row for row in finished}
    points = {k: (snr[k], coverage[k]) for k in snr if k in coverage}
    scatter = image(figures.qc_scatter(points, list(flagged)), "SNR against brain coverage") if points else ""
    listing = table(("subject", "why"), [[_link(by_key[k]), "; ".join(v)] for k, v in flagged.items()]) \
        if flagged else "<p>No QC outliers or warnings.</p>"
    return scatter + listing


def _summary(rows: Sequence[dict[str, Any]], counts: Sequence[int]) -> str:
    statuses = Counter(row["status"] for row in rows)
    return cards([("subjects", len(rows)), ("detected now", statuses["done"]), ("finished earlier", statuses["skipped"]),
                  ("failed", statuses["failed"]), ("CMBs", sum(counts)), ("subjects with CMBs", sum(c > 0 for c in counts)),
                  ("median CMBs", f"{np.median(counts):g}" if counts else "-")])


def _regions_section(finished: Sequence[dict[str, Any]], out_dir: Path) -> str:
    regions = region_side_counts(finished, out_dir)
    listed = [r for r in (*MARS_REGIONS, "outside_brain") if regions[(r, "left")] or regions[(r, "right")]]
    if not listed:
        return "<p>No lesions with a MARS region.</p>"
    return (image(figures.region_side_bars(regions, listed), "lesions by region and side")
            + table(("region", "left", "right"),
                    [[r.replace("_", " "), regions[(r, "left")], regions[(r, "right")]] for r in listed]))


def render_cohort_report(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike, settings: Mapping[str, Any],
                         model: Mapping[str, str]) -> str:
    """The cohort report as one HTML document."""
    finished = [row for row in rows if row["status"] != "failed"]
    failed = [row for row in rows if row["status"] == "failed"]
    counts = [int(row["n_lesions"]) for row in finished]
    histogram = image(figures.count_histogram(counts), "CMBs per subject") if counts else "<p>No finished subjects.</p>"
    failures = table(("subject", "session", "error"), [[r["subject"], r["session"], r["error"]] for r in failed]) \
        if failed else "<p>None.</p>"
    subjects = table(("subject", "status", "CMBs", "seconds", "SNR", "coverage"),
                     [[_link(r), r["status"], r["n_lesions"], r["seconds"], r["snr"], r["brain_coverage"]] for r in rows])
    provenance = [("model", f'{model.get("model_name", "")} {model.get("model_version", "")}'),
                  *((name.replace("_", " "), shown(value)) for name, value in settings.items()),
                  ("report written", datetime.datetime.now().astimezone().isoformat(timespec="seconds"))]
    body = ("<h1>Cerebral microbleeds: cohort</h1>" + _summary(rows, counts)
            + "<h2>CMBs per subject</h2>" + histogram
            + "<h2>Lesions by region and side</h2>" + _regions_section(finished, Path(out_dir))
            + "<h2>Quality control</h2>" + _qc_section(finished)
            + "<h2>Failures</h2>" + failures
            + "<h2>Subjects</h2>" + subjects
            + "<h2>Settings</h2>" + table((), provenance))
    return page("CMB cohort report", body)


def write_cohort_report(rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike, settings: Mapping[str, Any],
                        model: Mapping[str, str]) -> Path:
    """Render the cohort report and write it atomically to ``out_dir/cohort_report.html``."""
    return write_text_atomically(render_cohort_report(rows, out_dir, settings, model), Path(out_dir) / REPORT_NAME)
