"""Write a volume as a DICOM MR series (one MR Image Storage file per slice), as a scanner would send it.

Patient, study, series and frame-of-reference UIDs are fresh; the names and dates are fixed test values, so
tests can check that the DICOM outputs copy them.

>>> import tempfile, SimpleITK as sitk
>>> image = sitk.Image(4, 3, 2, sitk.sitkInt16)
>>> files = write_mr_series(image, tempfile.mkdtemp(), "SWI test")
>>> len(files)
2
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

PATIENT = {"PatientName": "Test^Phantom", "PatientID": "CMB-TEST-01", "PatientBirthDate": "19500101",
           "PatientSex": "O"}
STUDY = {"StudyDate": "20240102", "StudyTime": "101500", "AccessionNumber": "ACC42", "StudyID": "7",
         "ReferringPhysicianName": "Doctor^Referring", "StudyDescription": "MR brain"}


def write_mr_series(image: sitk.Image, folder: str | os.PathLike, description: str,
                    study_uid: str | None = None, series_number: int = 6) -> list[Path]:
    """Write ``image`` (3D, integer values 0..65535) into ``folder`` as one MR series; returns the files, slice order.

    ``study_uid`` puts the series into an existing study (a fresh one by default).
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image)
    shared = {"StudyInstanceUID": study_uid or generate_uid(), "SeriesInstanceUID": generate_uid(),
              "FrameOfReferenceUID": generate_uid(), "SeriesDescription": description, "SeriesNumber": series_number}
    return [_write_slice(array[k], _slice_position(image, k), image, shared, k, folder) for k in range(array.shape[0])]


def _slice_position(image: sitk.Image, k: int) -> list[float]:
    """LPS position of voxel (0, 0, k): DICOM's ImagePositionPatient."""
    return [float(x) for x in image.TransformIndexToPhysicalPoint((0, 0, k))]


def _write_slice(pixels: np.ndarray, position: list[float], image: sitk.Image, shared: dict, k: int,
                 folder: Path) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = folder / f"slice_{k:04d}.dcm"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    for key, value in {**PATIENT, **STUDY, **shared}.items():
        setattr(ds, key, value)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer, ds.InstanceNumber = "MR", "Synthetic", k + 1
    ds.SeriesDate, ds.SeriesTime, ds.ContentDate, ds.ContentTime = "20240102", "101600", "20240102", "101600"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SP", "", "3D"
    ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 20.0, 28.0, 1, 3.0
    ds.SliceThickness, ds.PositionReferenceIndicator = f"{spacing[2]:.6g}", ""
    ds.PatientPosition, ds.Laterality = "HFS", ""  # Laterality: type 2C, empty for the unpaired brain
    ds.ImagePositionPatient = [f"{x:.6f}" for x in position]
    ds.ImageOrientationPatient = [f"{x:.6f}" for x in (*direction[:, 0], *direction[:, 1])]
    ds.PixelSpacing = [f"{spacing[1]:.6g}", f"{spacing[0]:.6g}"]  # row spacing (between rows = along j) first
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path
