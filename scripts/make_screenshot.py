"""Make docs/screenshot.png, the extension's screenshot: the module's results in a headless MRML scene, rendered.

No Slicer GUI runs here, so the picture is drawn, not captured: a real ``vtkMRMLScene`` from ``slicer-core`` (wired
by ``Testing/slicer_harness.py``, as the Slicer tests do), the demo phantom loaded by the Volumes logic, the real
detection run through the module's ``DetectionLogic`` (shipped UNet on ONNX Runtime, CPU, MARS on), then two axial
slices with the segmentation outlines and point labels, and the lesion and MARS tables, all read back from the
scene's result nodes. About a minute on two cores, no network.

    python scripts/make_screenshot.py                       # writes docs/screenshot.png
    python scripts/make_screenshot.py -o /tmp/shot.png
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TITLE = "CMBDetection results in a headless MRML scene (slicer-core); rendered, not a Slicer GUI capture"
LESION_COLUMNS = ("id", "region", "side", "certainty", "diameter", "volume", "confidence", "accepted")
MARS_COLUMNS = ("category", "region", "side", "definite", "possible", "total")
SIZE_INCHES = (14, 8)  # 1400 x 800 pixels at 100 dpi
UPSAMPLE = 4  # outlines drawn on voxel edges, as Slicer's 2D views draw a labelmap's outline
ZOOM_FIELD_MM = 24.0  # the zoomed views' width: a few times the largest CMB (10 mm)


@dataclass
class SlicedVolume:
    """An axis-aligned volume reordered to ``[S, A, R]`` with indices increasing along each RAS axis."""

    array: np.ndarray
    origin: np.ndarray  # RAS mm of voxel [0, 0, 0]
    spacing: np.ndarray  # mm along S, A, R

    def coordinates(self, axis: int, count: int | None = None) -> np.ndarray:
        """Voxel-centre coordinates (mm) along ``axis`` (0 S, 1 A, 2 R)."""
        n = self.array.shape[axis] if count is None else count
        return self.origin[axis] + self.spacing[axis] * np.arange(n)


@dataclass
class Segment:
    name: str
    colour: tuple[float, float, float]
    mask: np.ndarray  # [S, A, R], like the volume


def to_sar(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> SlicedVolume:
    """Reorder a ``[k, j, i]`` array so that its axes run along S, A and R (increasing).

    >>> volume = to_sar(np.zeros((2, 3, 4)), np.diag([-1.0, 1.0, 2.0, 1.0]))
    >>> volume.array.shape, volume.origin.tolist(), volume.spacing.tolist()
    ((2, 3, 4), [0.0, 0.0, -3.0], [2.0, 1.0, 1.0])
    """
    directions = ijk_to_ras[:3, :3]
    order, origin, spacing = [], [], []
    for ras_axis in (2, 1, 0):  # S, A, R
        ijk_axis = int(np.argmax(np.abs(directions[ras_axis])))
        step = directions[ras_axis, ijk_axis]
        if not np.isclose(abs(step), np.linalg.norm(directions[:, ijk_axis])):
            raise ValueError("the volume is oblique; this figure needs an axis-aligned volume such as the demo phantom.")
        n = array_kji.shape[2 - ijk_axis]
        order.append(2 - ijk_axis)
        origin.append(ijk_to_ras[ras_axis, 3] + (0 if step > 0 else (n - 1) * step))
        spacing.append(abs(step))
    array = np.transpose(array_kji, order)
    flips = [axis for axis, ras_axis in enumerate((2, 1, 0)) if directions[ras_axis, 2 - order[axis]] < 0]
    return SlicedVolume(np.flip(array, flips) if flips else array, np.array(origin), np.array(spacing))


def _slicer_globals():
    """The headless scene the Slicer tests use (``Testing/slicer_harness.py``) and ``slicer`` itself."""
    if importlib.util.find_spec("slicer") is None:
        raise SystemExit("slicer-core is not installed; install it (pip install slicer-core, CPython 3.11) and rerun.")
    sys.path[:0] = [str(ROOT), str(ROOT / "Testing"), str(ROOT / "CMBDetection")]
    from slicer_harness import SlicerHarness, slicer

    return SlicerHarness, slicer


def run_demo(slicer):
    """Load the demo phantom through the Volumes logic and run detection through the module's logic."""
    from CMBDetectionLib.pipeline import detect
    from CMBDetectionLogic import DetectionLogic, DetectionSettings, RunStatus
    from CMBDetectionLogic.sample_data import DEMO_FILE, demo_sample

    demo_sample()  # a missing demo file fails here with the module's own message
    volume = slicer.modules.volumes.logic().AddArchetypeVolume(str(DEMO_FILE), "demo_swi")
    if volume is None:
        raise SystemExit(f"{DEMO_FILE}: the Volumes logic could not read the demo volume; reinstall the package.")
    logic = DetectionLogic(functools.partial(detect, backend="onnxruntime"))
    outcome = logic.detect(volume, DetectionSettings(device="cpu"))
    if outcome.status is not RunStatus.DONE:
        raise SystemExit(f"detection on the demo volume did not finish: {outcome.message}")
    print(outcome.message)
    return volume, outcome.results.nodes


def read_segments(slicer, segmentation_node, volume_node, ijk_to_ras: np.ndarray) -> list[Segment]:
    """Each segment's mask on the volume's grid, with its name and colour, as the segmentation node holds them."""
    segmentation = segmentation_node.GetSegmentation()
    segments = []
    for segment_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segment_id)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation_node, segment_id, volume_node)
        segments.append(Segment(segment.GetName(), tuple(segment.GetColor()), to_sar(mask > 0, ijk_to_ras).array))
    return segments


def read_points(points_node) -> dict[str, np.ndarray]:
    """Point label -> RAS position (mm)."""
    points = {}
    for index in range(points_node.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        points_node.GetNthControlPointPosition(index, position)
        points[points_node.GetNthControlPointLabel(index)] = np.array(position)
    return points


def pick_slices(segments: list[Segment]) -> tuple[int, int]:
    """The axial slice crossed by the most lesions, then the one crossed by the most lesions the first misses;
    ties go to the slice that cuts more lesion area, so that outlines show rather than a lesion's tip."""
    area = np.array([segment.mask.sum(axis=(1, 2)) for segment in segments])  # [lesion, S] voxels
    crossed = area > 0
    first = int(np.argmax(crossed.sum(axis=0) * 1e6 + area.sum(axis=0)))
    missed = ~crossed[:, first]
    score = crossed[missed].sum(axis=0) * 1e9 + crossed.sum(axis=0) * 1e6 + area.sum(axis=0)
    score[max(first - 2, 0) : first + 3] = -1
    return first, int(np.argmax(score))


def head_box(volume: SlicedVolume, margin_mm: float = 6.0) -> tuple[float, float, float, float]:
    """R and A limits (mm) of the head in the axial projection, so the views are not mostly background."""
    projection = volume.array.max(axis=0)
    inside = projection > 0.15 * np.percentile(projection, 99)
    a_idx, r_idx = np.nonzero(inside)
    r, a = volume.coordinates(2), volume.coordinates(1)
    return r[r_idx.min()] - margin_mm, r[r_idx.max()] + margin_mm, a[a_idx.min()] - margin_mm, a[a_idx.max()] + margin_mm


@dataclass
class SliceScene:
    """What the slice views show, read from the scene: the volume, the segments and the point list."""

    volume: SlicedVolume
    segments: list[Segment]
    points: dict[str, np.ndarray]  # label -> RAS
    points_colour: tuple[float, float, float]


def draw_view(ax: Axes, scene: SliceScene, s_index: int, limits: tuple[float, float, float, float],
              labels: bool = True) -> list[str]:
    """An axial view as Slicer draws it (radiological: patient right on the left, anterior up); returns the names
    of the segments it cuts."""
    volume = scene.volume
    image = volume.array[s_index]
    low, high = np.percentile(image[image > 0.15 * np.percentile(image, 99)], (1, 99.5))
    half = volume.spacing / 2
    r, a = volume.coordinates(2), volume.coordinates(1)
    extent = (r[0] - half[2], r[-1] + half[2], a[0] - half[1], a[-1] + half[1])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, origin="lower", interpolation="nearest", extent=extent)
    fine_r = r[0] - half[2] + (np.arange(len(r) * UPSAMPLE) + 0.5) * volume.spacing[2] / UPSAMPLE
    fine_a = a[0] - half[1] + (np.arange(len(a) * UPSAMPLE) + 0.5) * volume.spacing[1] / UPSAMPLE
    shown = []
    for segment in scene.segments:
        cut = segment.mask[s_index]
        if cut.any():  # Slicer's 2D defaults: fill at half opacity, full outline
            fill = np.zeros((*cut.shape, 4))
            fill[cut] = (*segment.colour, 0.5)
            ax.imshow(fill, origin="lower", interpolation="nearest", extent=extent)
            fine = np.kron(cut, np.ones((UPSAMPLE, UPSAMPLE)))
            ax.contour(fine_r, fine_a, fine, levels=[0.5], colors=[segment.colour], linewidths=1.5)
            shown.append(segment.name)
    if labels:
        halo = [patheffects.withStroke(linewidth=2.5, foreground="white")]
        for name in (name for name in shown if name in scene.points):
            ax.annotate(name, scene.points[name][:2], xytext=(9, 8), textcoords="offset points", fontsize=9,
                        color=scene.points_colour, fontweight="bold", path_effects=halo)
    ax.set_xlim(limits[1], limits[0])
    ax.set_ylim(limits[2], limits[3])
    ax.set_facecolor("black")
    ax.set_xticks([])
    ax.set_yticks([])
    return shown


def draw_slice(ax: Axes, scene: SliceScene, s_index: int, box: tuple[float, float, float, float]) -> list[str]:
    """A whole axial slice with orientation letters and the slice position; returns the lesions it cuts."""
    shown = draw_view(ax, scene, s_index, box)
    for text, xy in (("R", (0.02, 0.5)), ("L", (0.98, 0.5)), ("A", (0.5, 0.98)), ("P", (0.5, 0.02))):
        ax.text(*xy, text, transform=ax.transAxes, color="#e8d44d", fontsize=8, ha="center", va="center")
    s_mm = scene.volume.coordinates(0)[s_index]
    ax.set_title(f" Axial  S {s_mm:+.1f} mm: {len(shown)} lesions ", fontsize=9, color="white",
                 backgroundcolor="#b03a2e", loc="left")
    ax.set_anchor("N")
    return shown


def draw_zoom(ax: Axes, scene: SliceScene, s_index: int, name: str, field_mm: float = ZOOM_FIELD_MM) -> None:
    """The same slice magnified around one lesion's point, as a rater zooms in to check an outline."""
    r, a = scene.points[name][:2]
    draw_view(ax, scene, s_index, (r - field_mm / 2, r + field_mm / 2, a - field_mm / 2, a + field_mm / 2), labels=False)
    ax.set_title(f"{name} ({field_mm:g} mm field)", fontsize=8, color=scene.points_colour, fontweight="bold")


def _cell(array, row: int) -> str:
    value = array.GetValue(row)
    if array.GetClassName() == "vtkBitArray":
        return "yes" if value else "no"
    if array.GetClassName() == "vtkDoubleArray":
        return f"{value:.2f}" if array.GetName() == "confidence" else f"{value:.1f}"
    return str(value)


def table_contents(table_node, columns: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    """Header (with units) and cells of some columns of a ``vtkMRMLTableNode``, as its vtkTable holds them."""
    table = table_node.GetTable()
    arrays = [table.GetColumnByName(name) for name in columns]
    if any(array is None for array in arrays):
        raise ValueError(f"table {table_node.GetName()!r} lacks one of the columns {', '.join(columns)}.")
    header = [f"{name}\n({table_node.GetColumnUnitLabel(name)})" if table_node.GetColumnUnitLabel(name) else name
              for name in columns]
    rows = [[_cell(array, row) for array in arrays] for row in range(table.GetNumberOfRows())]
    return header, rows


def draw_table(ax: Axes, title: str, header: list[str], rows: list[list[str]]) -> None:
    """The cells as a plain grid filling ``ax``, columns as wide as their longest text."""
    ax.axis("off")
    ax.set_title(title, fontsize=9, loc="left")
    longest = [max([len(line) * 1.25 for line in header[n].split("\n")] + [len(row[n]) for row in rows])
               for n in range(len(header))]  # bold header letters are wider
    widths = np.array(longest) + 3
    table = ax.table(cellText=rows, colLabels=header, colWidths=list(widths / widths.sum()), bbox=(0, 0, 1, 1),
                     cellLoc="center", edges="horizontal")
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    for (row, _), cell in table.get_celld().items():
        cell.set_edgecolor("#d0d0d0")
        if row == 0:  # room for a unit under the name
            cell.set_height(cell.get_height() * (1.8 if any("\n" in text for text in header) else 1))
            cell.set_facecolor("#e6e6e6")
            cell.set_text_props(fontweight="bold")


def subtitle(nodes, known_cmbs: int) -> str:
    """What ran, from the attributes the module stores on the result nodes."""
    attribute = nodes.segmentation.GetAttribute
    lesions = nodes.lesion_table.GetNumberOfRows()
    return (f"Demo phantom (Sample Data 'CMBDemoSWI', {known_cmbs} simulated CMBs)  |  method {attribute('CMBDetection.Method')}, "
            f"model {attribute('CMBDetection.ModelName')} {attribute('CMBDetection.ModelVersion')}, ONNX Runtime on "
            f"{attribute('CMBDetection.Device')}, threshold {attribute('CMBDetection.Threshold')}, 3D filter "
            f"{'on' if attribute('CMBDetection.LesionFilter') == 'True' else 'off'}  |  "
            f"{lesions} candidates, MARS rated  |  slicer-core {version('slicer-core')}")


def render(volume_node, nodes, slicer, output: Path) -> None:
    from CMBDetectionLogic.sample_data import DEMO_FILE
    from CMBDetectionLogic.volume_conversion import ijk_to_ras

    matrix = ijk_to_ras(volume_node)
    volume = to_sar(slicer.util.arrayFromVolume(volume_node), matrix)
    segments = read_segments(slicer, nodes.segmentation, volume_node, matrix)
    if not segments:
        raise SystemExit("detection found no lesions on the demo volume; nothing to show.")
    scene = SliceScene(volume, segments, read_points(nodes.points), nodes.points.GetDisplayNode().GetSelectedColor())
    known = len(json.loads(DEMO_FILE.with_name("demo_cmbs.json").read_text()))
    lesion_header, lesion_rows = table_contents(nodes.lesion_table, LESION_COLUMNS)
    mars_header, mars_rows = table_contents(nodes.mars_table, MARS_COLUMNS)
    kept = [row for row in mars_rows if row[-1] != "0" or row[1] == "all"]

    figure = plt.figure(figsize=SIZE_INCHES, dpi=100)
    outer = figure.add_gridspec(1, 3, width_ratios=(1, 1, 1.15), left=0.008, right=0.992, top=0.885, bottom=0.012,
                                wspace=0.04)
    box = head_box(volume)
    for column, s_index in enumerate(pick_slices(segments)):
        view, strip = outer[0, column].subgridspec(2, 1, height_ratios=(3.3, 1), hspace=0.1)
        shown = [name for name in draw_slice(figure.add_subplot(view), scene, s_index, box) if name in scene.points]
        zooms = strip.subgridspec(1, max(len(shown[:4]), 3), wspace=0.08)
        for place, name in zip(zooms, shown[:4]):
            draw_zoom(figure.add_subplot(place), scene, s_index, name)
    lesions_cell, mars_cell = outer[0, 2].subgridspec(2, 1, height_ratios=(len(lesion_rows) + 1.8, len(kept) + 1),
                                                      hspace=0.1)
    draw_table(figure.add_subplot(lesions_cell), f"Lesion table '{nodes.lesion_table.GetName()}' (R, A, S, source "
               "hidden)", lesion_header, lesion_rows)
    draw_table(figure.add_subplot(mars_cell), f"MARS count table '{nodes.mars_table.GetName()}' ({len(kept)} of "
               f"{len(mars_rows)} rows; zero rows hidden)", mars_header, kept)
    figure.suptitle(TITLE, fontsize=12.5, fontweight="bold", x=0.008, ha="left", y=0.982)
    figure.text(0.008, 0.93, subtitle(nodes, known), fontsize=8.5, color="#404040")
    save_small_png(figure, output)


def save_small_png(figure, output: Path) -> None:
    """PNG with a 256-colour palette: grey images and a few overlay colours lose nothing visible, size halves."""
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.canvas.draw()
    rgb = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3])
    plt.close(figure)
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(output, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "screenshot.png", help="PNG to write")
    args = parser.parse_args(argv)
    harness_class, slicer = _slicer_globals()
    harness = harness_class.create()
    try:
        volume_node, nodes = run_demo(slicer)
        render(volume_node, nodes, slicer, args.output)
    finally:
        harness.close()
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
