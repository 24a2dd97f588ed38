"""The PACS worker: find SWI series in Orthanc not yet processed, detect CMBs, store a DICOM SEG and SR beside them.

One pass (:meth:`PacsWorker.run_once`):

1. list every series; candidates are MR series whose description matches the rule (default :data:`DEFAULT_MATCH`:
   SWI, SWAN or T2*, but not minIP, mIP or phase images), complete (Orthanc calls them stable);
2. skip those already processed: the PACS itself is the memory. A series is processed when an SR of this software
   (manufacturer ``CMBDetection``) lists it as evidence, so a second worker, a restart or a second ``--once`` never
   processes it again, and deleting the SR in the PACS asks for a new run;
3. for each other candidate: download, detect, write the SEG (when a lesion is found) and the SR, delete any SEG/SR
   of ours left for that series by an interrupted run, upload the SEG then the SR (the SR last: it marks the series
   done). A failure is reported in one line and the next series goes on; a failed series is tried again in a later
   pass only once Orthanc received something new for it.

>>> worker = PacsWorker(OrthancClient("http://localhost:8042"), series_rule(DEFAULT_MATCH), detector)  # doctest: +SKIP
>>> failures = sum(outcome.error is not None for outcome in worker.run_once(print))              # doctest: +SKIP
>>> bool(series_rule(DEFAULT_MATCH).search("SWI_Images")), bool(series_rule(DEFAULT_MATCH).search("mIP_Images(SW)"))
(True, False)
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from CMBDetectionLib.errors import PacsError, one_line
from CMBDetectionLib.imageio.volumes import read_volume_and_headers
from CMBDetectionLib.outputs.dicom_source import MANUFACTURER
from CMBDetectionLib.outputs.files import write_outputs
from CMBDetectionLib.pacs.orthanc_client import OrthancClient
from CMBDetectionLib.results import DetectionResult

#: Series descriptions to process (case-insensitive regular expression, searched): SWI, SWAN (GE), T2* / T2 star,
#: unless the description names a minimum intensity projection or a phase image.
DEFAULT_MATCH = r"^(?!.*(min.?ip|(?<![a-z])mip(?![a-z])|phase|(?<![a-z])pha(?![a-z]))).*(swi|swan|t2\*|t2.?star)"


@dataclass
class Outcome:
    """What happened to one series: ``error`` is None when it was processed, else the one-line reason."""

    series_uid: str
    description: str
    summary: str = ""
    error: str | None = None

    def line(self) -> str:
        return f"series {self.series_uid} ({self.description}): {self.error or self.summary}"


def series_rule(match: str) -> re.Pattern:
    """The compiled ``--match`` rule; ``ValueError`` (one line) when it is not a valid regular expression."""
    try:
        return re.compile(match, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"--match {match!r}: not a valid regular expression ({exc}); quote it and fix it.") from None


@dataclass
class PacsWorker:
    """Processes ``client``'s series matching ``rule`` with ``detector`` (volume -> result)."""

    client: OrthancClient
    rule: re.Pattern
    detector: Callable[[sitk.Image], DetectionResult]
    _failed: dict[str, str] = field(default_factory=dict)  # Orthanc series ID -> its LastUpdate when it failed
    # Instance ID of our first SEG/SR instance -> the series it references: a stored instance never changes, so
    # its tags are asked once, not at every poll.
    _references: dict[str, set[str]] = field(default_factory=dict)

    def run_once(self, report: Callable[[Outcome], None]) -> list[Outcome]:
        """One pass over the PACS; ``report`` gets each outcome as it happens. Raises ``PacsError`` when the
        series cannot be listed."""
        everything = self.client.all_series()
        ours = self._our_results(everything)
        outcomes = []
        for series in self._candidates(everything, ours):
            outcome = self._process(series, ours.get(_tag(series, "SeriesInstanceUID"), []))
            if outcome.error is None:
                self._failed.pop(series["ID"], None)
            else:
                self._failed[series["ID"]] = series.get("LastUpdate", "")
            report(outcome)
            outcomes.append(outcome)
        return outcomes

    def _candidates(self, everything: Iterable[dict[str, Any]], ours: dict[str, list[dict]]) -> list[dict[str, Any]]:
        """Stable MR series matching the rule, with no SR of ours, and not failed since their last change."""
        def done(series: dict[str, Any]) -> bool:
            return any(_tag(result, "Modality") == "SR" for result in ours.get(_tag(series, "SeriesInstanceUID"), []))

        return [series for series in everything
                if _tag(series, "Modality") == "MR" and self.rule.search(_tag(series, "SeriesDescription"))
                and series.get("IsStable", True) and not done(series)
                and self._failed.get(series["ID"]) != series.get("LastUpdate", "")]

    def _our_results(self, everything: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Our SEG and SR series in the PACS, by the UID of each source series they reference."""
        ours: dict[str, list[dict[str, Any]]] = {}
        references = {}  # rebuilt each pass, so that deleted results drop out
        for series in everything:
            if _tag(series, "Manufacturer") == MANUFACTURER and _tag(series, "Modality") in ("SEG", "SR"):
                instance = series["Instances"][0]
                references[instance] = self._references.get(instance)
                if references[instance] is None:
                    references[instance] = _referenced_series(self.client.instance_tags(instance))
                for uid in references[instance]:
                    ours.setdefault(uid, []).append(series)
        self._references = references
        return ours

    def _process(self, series: dict[str, Any], earlier: list[dict[str, Any]]) -> Outcome:
        """Detect on one series and store its SEG and SR in its study; any failure becomes the outcome's error."""
        outcome = Outcome(_tag(series, "SeriesInstanceUID"), _tag(series, "SeriesDescription"))
        try:
            with tempfile.TemporaryDirectory(prefix="cmb-pacs-") as work:
                folder = Path(work) / "series"
                self.client.download_series(series["ID"], folder)
                image, datasets = read_volume_and_headers(folder)
                result = self.detector(image)
                paths = write_outputs(result, Path(work) / "out", "series", dicom_datasets=datasets)
                for old in earlier:  # left by an interrupted run: never two reports for one series
                    self.client.delete_series(old["ID"])
                for kind in ("dicom_seg", "dicom_sr"):
                    if kind in paths:
                        self.client.upload(paths[kind])
        except Exception as exc:  # whatever one series does, the others go on
            outcome.error = one_line(exc)
            return outcome
        stored = "SEG and SR" if "dicom_seg" in paths else "SR"
        outcome.summary = f"{len(result.lesions)} CMB(s); {stored} stored in its study"
        return outcome


def _tag(series: dict[str, Any], keyword: str) -> str:
    """A main DICOM tag of an Orthanc series, "" when absent."""
    return str(series.get("MainDicomTags", {}).get(keyword) or "").strip()


def _referenced_series(tags: dict[str, Any]) -> set[str]:
    """Series UIDs an instance of ours references: a SEG's referenced series, an SR's evidence."""
    if not isinstance(tags, dict):
        raise PacsError("Orthanc answered an instance's tags in an unknown layout; use Orthanc 1.5 or newer.")
    studies = tags.get("CurrentRequestedProcedureEvidenceSequence") or [tags]
    return {str(item.get("SeriesInstanceUID")) for study in studies
            for item in study.get("ReferencedSeriesSequence") or []}
