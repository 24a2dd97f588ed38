"""Scene content shared by the Slicer logic tests: a small volume with three dark blobs, stand-in detector and locator."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from slicer_harness import slicer

from CMBDetectionLib.lesions.extraction import extract_lesions
from CMBDetectionLib.results import DetectionResult, Lesion

BLOBS_KJI = [(5, 10, 10), (15, 20, 30), (24, 30, 40)]
SHAPE = (30, 40, 50)


def count_by_side(lesions: list[Lesion]) -> list[dict]:
    """Reference MARS-like counter for the tests (the engine's ``mars.count_table`` is checked in its own tests)."""
    regions = sorted({lesion.region for lesion in lesions})
    return [
        {"region": region, "left": sum(x.side == "left" for x in lesions if x.region == region),
         "right": sum(x.side == "right" for x in lesions if x.region == region)}
        for region in regions
    ]


def fake_detector(image, *, method, threshold, device, use_lesion_filter=True, redraw_outlines=True, progress=None,
                  cancel=None):
    """Dark voxels (< 20) as probability 1; every lesion rated frontal/definite, side from its RAS x."""
    probability = (sitk.GetArrayFromImage(image) < 20).astype(np.float32)
    label_map, lesions = extract_lesions(probability, image, threshold)
    for lesion in lesions:
        lesion.region, lesion.category, lesion.certainty = "frontal", "lobar", "definite"
        lesion.side = "right" if lesion.centre_ras[0] > 0 else "left"
    if progress:
        progress(1.0)
    provenance = {"method": method, "model_name": "fake-dark-blobs", "model_version": "1"}
    return DetectionResult(image, probability, label_map, lesions, provenance)


def fake_locator(volume_node):
    """Stands in for ``MarsRater.locate``: every point frontal, side from its RAS x."""
    return lambda ras: ("frontal", "lobar", "right" if ras[0] > 0 else "left")


def make_volume(scene, name="swi"):
    array = np.full(SHAPE, 100, np.float32)
    for k, j, i in BLOBS_KJI:
        array[k - 1 : k + 2, j - 1 : j + 2, i - 1 : i + 2] = 5
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    volume.SetSpacing(0.8, 0.9, 1.5)
    volume.SetOrigin(-20.0, 30.0, 5.0)
    volume.SetIJKToRASDirections(-1, 0, 0, 0, 0, 1, 0, 1, 0)  # oblique enough to catch axis or sign mix-ups
    slicer.util.updateVolumeFromArray(volume, array)
    return volume
