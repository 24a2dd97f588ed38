"""One detection's lesions, kept in sync across its segmentation, points and tables while a rater corrects them.

The lesion list held here is the truth; the nodes are views of it, and a change made in any view is applied
to the list and then to the other views:

- deleting a lesion's point or segment, or unticking ``accepted`` in the table, rejects it: segment and point
  go, the row stays (unticked) so the rejection can be undone by ticking it again;
- placing a new point adds a lesion grown from the dark blob under it (segment, row, counted);
- editing region, side or certainty in the table updates the lesion and the MARS counts.

>>> results = LesionResults(nodes, volumeNode, lesions, label_map)    # doctest: +SKIP
>>> results.reject(3); results.accepted_labels()                      # doctest: +SKIP
[1, 2, 4]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import slicer
import vtk
from scipy import ndimage

from CMBDetectionLib.results import Lesion

from . import tables
from .result_nodes import (
    SEMIAUTOMATIC,
    ResultNodes,
    add_point,
    add_segment,
    fill_segments,
    lesion_name,
    segment_ids_by_lesion,
)

log = logging.getLogger(__name__)

#: (volume image, centre RAS, new label) -> (Lesion, [k, j, i] mask); default CMBDetectionLib.lesions.growing.grow_lesion
Grower = Callable[[Any, tuple[float, float, float], int], tuple[Lesion, np.ndarray]]
#: centre RAS -> (region, category, side); default from CMBDetectionLib.mars.rating.MarsRater, made from the volume's
#: SimpleITK image by a factory that runs off the GUI thread (MNI registration takes seconds)
Locator = Callable[[tuple[float, float, float]], tuple[str, str, str]]
#: accepted lesions -> MARS count rows; default CMBDetectionLib.mars.rating.count_table
Counter = Callable[[list[Lesion]], list[dict[str, Any]]]


def _mars_regions() -> dict[str, str]:
    from CMBDetectionLib.mars.regions import MARS_REGIONS

    return MARS_REGIONS


def default_count_table(lesions: list[Lesion]) -> list[dict[str, Any]]:
    from CMBDetectionLib.mars.rating import count_table

    return count_table(lesions)


class LesionResults:
    """The lesions of one run on one volume and the observers that keep their four nodes consistent."""

    def __init__(
        self,
        nodes: ResultNodes,
        volume_node,
        *,
        grow: Grower | None = None,
        locate_factory: Callable[[Any], Locator | None] | None = None,
        count_table: Counter = default_count_table,
        notify: Callable[[str], None] = log.warning,
    ) -> None:
        self.nodes = nodes
        self.volume_node = volume_node
        self.lesions: dict[int, Lesion] = {}
        self.accepted: dict[int, bool] = {}
        self.source: dict[int, str] = {}
        self.corrected = False
        self._masks: dict[int, tuple[tuple[slice, ...], np.ndarray]] = {}
        self._point_ids: dict[str, int] = {}
        self._grow = grow
        self._locate_factory = locate_factory
        self._locate: Locator | None = None
        self._locator_future: Future | None = None
        self._count_table = count_table
        self._notify = notify
        self._updating = False
        self._observations: list[tuple[Any, int]] = []
        self._observe()

    # ---- filling -------------------------------------------------------------------------------------------
    def fill(self, lesions: list[Lesion], label_map: np.ndarray, source: str = "model") -> None:
        """Show a fresh run: replace every lesion, segment, point and row; clears the corrected flag."""
        self._updating = True
        try:
            self.lesions = {lesion.label: lesion for lesion in lesions}
            self.accepted = {label: True for label in self.lesions}
            self.source = {label: source for label in self.lesions}
            self._masks = {}
            for label, box in enumerate(ndimage.find_objects(label_map), start=1):
                if box is not None and label in self.lesions:
                    self._masks[label] = (box, label_map[box] == label)
            fill_segments(self.nodes.segmentation, self.volume_node, label_map, sorted(self.lesions))
            self.nodes.points.RemoveAllControlPoints()
            self._point_ids = {add_point(self.nodes.points, lesion): lesion.label for lesion in lesions}
            tables.fill_lesion_table(self.nodes.lesion_table, ((lesion, True, source) for lesion in lesions))
            self._update_counts()
            self.corrected = False
        finally:
            self._updating = False
        self.prepare_locator()

    def restore_state(self, lesions: list[Lesion], accepted: dict[int, bool], source: dict[int, str]) -> None:
        """Take over results already in MRML (a reloaded scene): masks come from the segments still present, so a
        lesion rejected before saving cannot come back (its outline was not saved)."""
        from .volume_conversion import labelmap_from_segments

        self.lesions = {lesion.label: lesion for lesion in lesions}
        self.accepted, self.source = dict(accepted), dict(source)
        label_map = labelmap_from_segments(self.nodes.segmentation, self.volume_node, segment_ids_by_lesion(self.nodes.segmentation))
        self._masks = {label: (box, label_map[box] == label) for label, box in enumerate(ndimage.find_objects(label_map), start=1)
                       if box is not None}
        self._point_ids = {self.nodes.points.GetNthControlPointID(i): int(self.nodes.points.GetNthControlPointLabel(i).split()[-1])
                           for i in range(self.nodes.points.GetNumberOfControlPoints())}
        self.corrected = True
        self.prepare_locator()

    def prepare_locator(self) -> None:
        """Start making the MARS locator for added lesions in a worker thread (the image is copied here, on the
        main thread, because MRML must not be touched from another thread)."""
        if self._locate_factory is None or self._locator_future is not None:
            return
        from .volume_conversion import volume_to_image

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="CMBDetection-MARS")
        self._locator_future = executor.submit(self._locate_factory, volume_to_image(self.volume_node))
        executor.shutdown(wait=False)

    # ---- queries -------------------------------------------------------------------------------------------
    def accepted_labels(self) -> list[int]:
        return sorted(label for label, ok in self.accepted.items() if ok)

    def accepted_lesions(self) -> list[Lesion]:
        return [self.lesions[label] for label in self.accepted_labels()]

    def counts(self) -> list[dict[str, Any]] | None:
        try:
            return self._count_table(self.accepted_lesions())
        except ImportError:
            return None

    def full_mask(self, label: int) -> np.ndarray:
        """A lesion's ``[k, j, i]`` mask on the volume grid."""
        box, local = self._masks[label]
        mask = np.zeros(slicer.util.arrayFromVolume(self.volume_node).shape, np.uint8)
        mask[box][local] = 1
        return mask

    # ---- corrections ---------------------------------------------------------------------------------------
    def reject(self, label: int) -> None:
        """Remove a lesion's segment and point, untick its row and recount."""
        if not self.accepted.get(label):
            return
        self._updating = True
        try:
            self.accepted[label] = False
            segment_id = segment_ids_by_lesion(self.nodes.segmentation).get(label)
            if segment_id:
                self.nodes.segmentation.GetSegmentation().RemoveSegment(segment_id)
            for point_id, point_label in list(self._point_ids.items()):
                if point_label == label:
                    index = self.nodes.points.GetNthControlPointIndexByID(point_id)
                    if index >= 0:
                        self.nodes.points.RemoveNthControlPoint(index)
                    del self._point_ids[point_id]
            tables.set_cells(self.nodes.lesion_table, label, accepted=0)
            self._after_correction()
        finally:
            self._updating = False

    def restore(self, label: int) -> None:
        """Undo a rejection: the lesion's segment and point come back and it is counted again."""
        if self.accepted.get(label, True):
            return
        self._updating = True
        try:
            self.accepted[label] = True
            add_segment(self.nodes.segmentation, self.volume_node, label, self.full_mask(label),
                        SEMIAUTOMATIC if self.source[label] == "rater" else "AUTOMATIC")
            self._point_ids[add_point(self.nodes.points, self.lesions[label])] = label
            tables.set_cells(self.nodes.lesion_table, label, accepted=1)
            self._after_correction()
        finally:
            self._updating = False

    def add_lesion_at(self, centre_ras: tuple[float, float, float], point_id: str | None = None) -> Lesion:
        """Grow a new lesion from the dark blob at ``centre_ras``; its point is ``point_id`` or a new one.

        Raises ``CMBDetectionLib.lesions.growing.NoLesionHere`` when there is no dark blob there.
        """
        from .volume_conversion import volume_to_image

        label = max(self.lesions, default=0) + 1
        lesion, mask = self._grower()(volume_to_image(self.volume_node), tuple(centre_ras), label)
        lesion = dataclasses.replace(lesion, certainty="definite", **self._location(lesion.centre_ras))
        self._updating = True
        try:
            self.lesions[label], self.accepted[label], self.source[label] = lesion, True, "rater"
            box = ndimage.find_objects(mask)[0]
            self._masks[label] = (box, mask[box] > 0)
            add_segment(self.nodes.segmentation, self.volume_node, label, mask, SEMIAUTOMATIC)
            if point_id is None:
                point_id = add_point(self.nodes.points, lesion)
            else:
                index = self.nodes.points.GetNthControlPointIndexByID(point_id)
                self.nodes.points.SetNthControlPointLabel(index, lesion_name(label))
            self._point_ids[point_id] = label
            tables.append_row(self.nodes.lesion_table, lesion, "rater")
            self._after_correction()
        finally:
            self._updating = False
        return lesion

    def _grower(self) -> Grower:
        if self._grow is None:
            from CMBDetectionLib.lesions.growing import grow_lesion

            self._grow = lambda image, ras, label: grow_lesion(image, ras, label)
        return self._grow

    def _location(self, centre_ras) -> dict[str, str]:
        self.prepare_locator()
        if self._locate is None and self._locator_future is not None:
            try:
                self._locate = self._locator_future.result()
            except Exception as exc:  # atlas or registration failure: the lesion is added without MARS fields
                self._notify(f"MARS region unavailable for added lesions: {exc}")
                self._locate_factory = None  # do not register again on every click
        if self._locate is None:
            return {}
        region, category, side = self._locate(tuple(centre_ras))
        return {"region": region, "category": category, "side": side}

    def _after_correction(self) -> None:
        self.corrected = True
        self._update_counts()

    def _update_counts(self) -> None:
        counts = self.counts()
        tables.fill_count_table(self.nodes.mars_table, counts if counts is not None else [])

    # ---- observers: a change made in one view --------------------------------------------------------------
    def _observe(self) -> None:
        points, segmentation = self.nodes.points, self.nodes.segmentation.GetSegmentation()
        for obj, event, callback in (
            (points, points.PointRemovedEvent, self._on_points_changed),
            (points, points.PointPositionDefinedEvent, self._on_points_changed),
            (segmentation, slicer.vtkSegmentation.SegmentRemoved, self._on_segment_removed),
            (self.nodes.lesion_table, vtk.vtkCommand.ModifiedEvent, self._on_table_modified),
        ):
            self._observations.append((obj, obj.AddObserver(event, callback)))

    def stop_observing(self) -> None:
        for obj, tag in self._observations:
            obj.RemoveObserver(tag)
        self._observations = []

    def _on_points_changed(self, *_args) -> None:
        if self._updating:
            return
        points = self.nodes.points
        present = {points.GetNthControlPointID(i): i for i in range(points.GetNumberOfControlPoints())}
        for point_id, label in list(self._point_ids.items()):
            if point_id not in present:
                del self._point_ids[point_id]
                self.reject(label)
        for point_id, index in present.items():
            if point_id not in self._point_ids and points.GetNthControlPointPositionStatus(index) == points.PositionDefined:
                self._add_from_point(point_id, index)

    def _add_from_point(self, point_id: str, index: int) -> None:
        from CMBDetectionLib.errors import NoLesionHere

        try:
            self.add_lesion_at(tuple(self.nodes.points.GetNthControlPointPosition(index)), point_id)
        except NoLesionHere as exc:
            self._updating = True
            try:
                self.nodes.points.RemoveNthControlPoint(index)
            finally:
                self._updating = False
            self._notify(str(exc))

    def _on_segment_removed(self, *_args) -> None:
        if self._updating:
            return
        present = segment_ids_by_lesion(self.nodes.segmentation)
        for label in self.accepted_labels():
            if label not in present:
                self.reject(label)

    def _on_table_modified(self, *_args) -> None:
        if self._updating:
            return
        edits = tables.read_edits(self.nodes.lesion_table)
        changed = False
        self._updating = True
        try:
            for label, edit in edits.items():
                if label in self.lesions:
                    changed |= self._apply_cell_edits(label, edit)
            if changed:
                self._after_correction()
        finally:
            self._updating = False
        for label, edit in edits.items():
            if label in self.accepted and edit.accepted != self.accepted[label]:
                self.restore(label) if edit.accepted else self.reject(label)

    def _apply_cell_edits(self, label: int, edit: tables.RowEdits) -> bool:
        """Take valid region/side/certainty edits into the lesion; put invalid ones back. True if any changed."""
        lesion, regions = self.lesions[label], _mars_regions()
        wanted = {"region": edit.region, "side": edit.side, "certainty": edit.certainty}
        allowed = {"region": (*regions, ""), "side": (*tables.SIDES, ""), "certainty": tables.CERTAINTIES}
        valid = {k: v for k, v in wanted.items() if v in allowed[k] and v != getattr(lesion, k)}
        invalid = {k: getattr(lesion, k) for k, v in wanted.items() if v not in allowed[k]}
        for key, value in wanted.items():
            if key in invalid:
                self._notify(f"{lesion_name(label)}: {value!r} is not a valid {key}; choose one of {', '.join(allowed[key])}.")
        if "region" in valid:
            valid["category"] = regions.get(valid["region"], "")
        if valid:
            self.lesions[label] = dataclasses.replace(lesion, **valid)
        fixes = {**invalid, **({"category": valid["category"]} if "category" in valid else {})}
        if fixes:  # the category follows the region; invalid cells are put back
            tables.set_cells(self.nodes.lesion_table, label, **fixes)
        return bool(valid)
