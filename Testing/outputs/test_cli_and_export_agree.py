"""``cmb-detect`` and the Slicer export write the same files for the same lesions (byte for byte but for the date).

The same stand-in detector (dark blobs) runs behind both front ends on the same volume: once through the
command line on the volume saved as NRRD (which keeps its geometry exactly), once in a headless Slicer scene
followed by *Export*. The volume is named as DICOM import names volumes (``6: swi``), which the export must turn
into a file name Windows accepts.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from slicer_fixtures import count_by_side, fake_detector, fake_locator, make_volume
from slicer_harness import slicer_harness  # noqa: F401 (fixture)

from CMBDetectionLib.cli.detect import main as detect_main
from CMBDetectionLogic import DetectionLogic, DetectionSettings, RunStatus
from CMBDetectionLogic.volume_conversion import volume_to_image


@pytest.fixture
def both_written(slicer_harness, tmp_path, monkeypatch):  # noqa: F811
    import CMBDetectionLib.pipeline as pipeline

    slicer_harness.clear()
    volume = make_volume(slicer_harness.scene, name="6: swi")
    sitk.WriteImage(volume_to_image(volume), str(tmp_path / "6_swi.nrrd"))

    def detector(image, *, method, threshold, device, **options):
        result = fake_detector(image, method=method, threshold=threshold, device=device)
        result.provenance["seconds"] = 0.0
        return result

    monkeypatch.setattr(pipeline, "detect", detector)
    cli_out, export_out = tmp_path / "cli", tmp_path / "export"
    assert detect_main([str(tmp_path / "6_swi.nrrd"), "-o", str(cli_out), "--method", "two-stage",
                        "--threshold", "0.5", "-q"]) == 0
    logic = DetectionLogic(fake_detector, locate_factory=fake_locator, count_table=count_by_side)
    assert logic.detect(volume, DetectionSettings(threshold=0.5)).status is RunStatus.DONE
    paths = logic.export(volume, export_out)
    return cli_out, export_out, paths


def test_the_cli_and_the_slicer_export_write_identical_files(both_written):
    cli_out, export_out, paths = both_written
    assert paths["mask"] == export_out / "6_swi_cmb.nii.gz" and paths["lesions_csv"] == export_out / "6_swi_lesions.csv"
    for name in ("6_swi_cmb.nii.gz", "6_swi_lesions.csv", "6_swi_lesions.mrk.json"):
        assert (export_out / name).read_bytes() == (cli_out / name).read_bytes(), name
    # the segmentations differ only in the date line pynrrd writes
    cli_seg, export_seg = (slicerio.read_segmentation(str(out / "6_swi_cmb.seg.nrrd")) for out in (cli_out, export_out))
    np.testing.assert_array_equal(export_seg["voxels"], cli_seg["voxels"])
    np.testing.assert_array_equal(export_seg["ijkToLPS"], cli_seg["ijkToLPS"])
    assert export_seg["segments"] == cli_seg["segments"]
    assert len((cli_out / "6_swi_lesions.csv").read_text().splitlines()) == 4  # header + the three blobs
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(cli_out / "6_swi_cmb.nii.gz")))
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3]
