"""What the DICOM outputs need besides the lesions: the source series' headers and how the run was made.

The SEG and the SR copy patient and study data from ``datasets`` (never invent them), reference that series
and its frame of reference, and name the algorithm (name and version) from the run's ``provenance``.

>>> source = DicomSource([], {"method": "unet", "model_name": "cmb-unet", "model_version": "0.6.0"})
>>> source.algorithm_name, source.algorithm_version
('CMBDetection unet (cmb-unet)', '0.6.0')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from CMBDetectionLib import __version__

#: Manufacturer and model name of the "device" (this software) in the SEG's and SR's equipment modules.
MANUFACTURER = "CMBDetection"
#: The Enhanced General Equipment module needs a device serial number; software has none, so its version stands in.
DEVICE_SERIAL_NUMBER = f"cmbdetection-{__version__}"


@dataclass(frozen=True)
class DicomSource:
    """The source series' headers (``pydicom.Dataset``, in the volume's slice order) and the run's provenance."""

    datasets: Sequence[Any]
    provenance: Mapping[str, Any]

    @property
    def algorithm_name(self) -> str:
        model = self.provenance.get("model_name")
        return f"{MANUFACTURER} {self.provenance.get('method', 'unet')}" + (f" ({model})" if model else "")

    @property
    def algorithm_version(self) -> str:
        """The model's version when its card gives one, else the software's."""
        return str(self.provenance.get("model_version") or __version__)

    @property
    def algorithm_parameters(self) -> dict[str, str]:
        """The settings that change the result, as text (DICOM stores algorithm parameters as strings)."""
        keys = ("threshold", "lesion_filter", "outlines")
        return {key: str(self.provenance[key]) for key in keys if self.provenance.get(key) is not None}

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    def check_grid(self, label_map: np.ndarray) -> None:
        """Raise ``ValueError`` unless the ``[k, j, i]`` label map has one slice per source image, of its size."""
        first = self.datasets[0]
        expected = (len(self.datasets), int(first.Rows), int(first.Columns))
        if tuple(label_map.shape) != expected:
            raise ValueError(f"label map of shape {label_map.shape} does not match DICOM series {self.series_uid} "
                             f"({expected[0]} slices of {expected[1]}x{expected[2]}); detect on that series again.")
