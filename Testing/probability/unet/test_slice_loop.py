"""The fast slice loop of unet_inference: skipped air slices, overlapped batches, same result as a plain loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic_cmb import synthetic_subject

from CMBDetectionLib.probability.unet.inference import head_slices, predict_probability, predict_slices
from CMBDetectionLib.probability.unet.slicing import SliceGrid, normalise_intensity, to_axial


class SquashBackend:
    """A pixelwise stand-in for the network that records which slices it saw and on which thread."""

    name, device = "squash", "CPU"

    def __init__(self):
        self.seen, self.threads, self.worker_alive = 0, set(), []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.flags.c_contiguous and batch.shape[1:] == (256, 256, 1)
        self.seen += len(batch)
        self.threads.add(threading.get_ident())
        self.worker_alive.append(any(t.name.startswith("cmb-slices") for t in threading.enumerate()))
        return self.squash(batch)

    @staticmethod
    def squash(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-8.0 * (x - 0.5)))


def _with_air_slices(image: sitk.Image, n_air: int) -> sitk.Image:
    """``image`` with ``n_air`` slices of background noise added above and below (as above the vertex)."""
    array = sitk.GetArrayFromImage(image)
    rng = np.random.default_rng(0)
    air = lambda: np.abs(rng.normal(0, 20, (n_air, *array.shape[1:]))).astype(np.float32)  # noqa: E731
    padded = sitk.GetImageFromArray(np.concatenate([air(), array, air()]))
    padded.SetSpacing(image.GetSpacing())
    padded.SetDirection(image.GetDirection())
    return padded


def _plain_loop(image: sitk.Image, backend) -> np.ndarray:
    """Reference: every slice through the model, one at a time (image already axial)."""
    volume = normalise_intensity(sitk.GetArrayFromImage(to_axial(image)))
    grid = SliceGrid.for_image(to_axial(image))
    return np.concatenate([grid.to_native(backend.predict(grid.to_model(volume[k : k + 1])[..., None])[..., 0])
                           for k in range(len(volume))])


@pytest.mark.parametrize("shape_kji, spacing", [((8, 256, 256), (0.9, 0.9, 2.0)), ((8, 70, 90), (1.1, 0.8, 2.0))])
def test_same_probabilities_as_a_plain_loop_and_air_slices_skipped(shape_kji, spacing):
    image, _, _ = synthetic_subject(5, shape_kji=shape_kji, spacing_ijk=spacing)
    image = _with_air_slices(image, 3)
    backend = SquashBackend()
    fast = predict_probability(image, backend=backend, batch_size=3)
    reference = _plain_loop(image, SquashBackend())
    assert backend.seen == shape_kji[0]  # the 6 air slices never reached the model
    np.testing.assert_array_equal(fast[3:-3], reference[3:-3])
    assert not fast[:3].any() and not fast[-3:].any()


def test_head_slices_keeps_small_head_sections_and_drops_noise():
    volume = np.zeros((4, 256, 256), np.float32)
    volume[1, 100:140, 100:140] = 1.0  # a 40x40 section at the vertex: 2.4 % of the slice
    volume[2, 0:2, 0:40] = 1.0  # 80 bright noise pixels: 0.1 %
    volume[3, 50:200, 50:200] = 0.8
    assert head_slices(volume).tolist() == [1, 3]


def test_batches_are_prepared_by_a_worker_while_the_model_runs_on_the_caller_thread():
    image, _, _ = synthetic_subject(6, shape_kji=(12, 64, 64))
    volume = normalise_intensity(sitk.GetArrayFromImage(image))
    backend = SquashBackend()
    probability = predict_slices(volume, SliceGrid.for_image(image), backend, batch_size=4)
    assert backend.threads == {threading.get_ident()} and backend.worker_alive == [True] * 3
    assert probability.shape == volume.shape and 0.0 <= probability.min() and probability.max() <= 1.0
    assert not any(t.name.startswith("cmb-slices") for t in threading.enumerate())  # the worker is gone


def test_in_distribution_volumes_are_predicted_on_their_own_pixels():
    # 256x256 at 0.9 mm (float32 spacing, as read from NIfTI): the slices reach the model unresampled, as before.
    image, _, _ = synthetic_subject(10, shape_kji=(6, 256, 256), spacing_ijk=tuple(float(v) for v in np.float32([0.9, 0.9, 2.0])))
    volume = normalise_intensity(sitk.GetArrayFromImage(to_axial(image)))
    np.testing.assert_array_equal(predict_probability(image, backend=SquashBackend()), SquashBackend.squash(volume))


def test_a_head_wider_than_the_window_is_predicted_tile_by_tile_without_seams():
    rng = np.random.default_rng(11)
    array = np.abs(rng.normal(0, 20, (4, 300, 320))).astype(np.float32)  # air
    array[:, 10:290, 12:308] = rng.normal(400, 40, (4, 280, 296))  # a 252 x 266 mm head at 0.9 mm: 4 tiles
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.9, 0.9, 2.0))
    backend = SquashBackend()
    probability = predict_probability(image, backend=backend, batch_size=3)
    assert backend.seen == 4 * 4  # every slice as four 256x256 tiles
    expected = SquashBackend.squash(normalise_intensity(array))
    np.testing.assert_array_equal(probability[:, 10:290, 12:308], expected[:, 10:290, 12:308])
