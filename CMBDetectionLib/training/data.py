"""Training data for the slice UNet: volume/mask pairs, the subject split, and augmented crop batches.

Accepted layouts of a data folder (see :func:`find_pairs`):

1. ``DIR/<name>_swi.nii.gz`` with ``DIR/<name>_cmb.nii.gz`` (what ``cmb-phantom`` writes);
2. ``DIR/images/<file>`` with ``DIR/labels/<file>`` of the same file name (also ``imagesTr``/``labelsTr``).

Any volume format of :data:`volume_io.VOLUME_SUFFIXES` works. Each subject is preprocessed once (axial,
normalised, 256x256 slices) into ``.npy`` files that are memory-mapped, so memory stays bounded however many
subjects there are. :class:`CropBatches` draws batches of crops, half of them (by default) centred near a CMB
because CMB voxels are rare, with random rotations, flips and intensity changes, or with ``randomise=True``
with domain randomisation (:mod:`CMBDetectionLib.training.randomisation`).

>>> pairs = find_pairs("phantoms/")                               # doctest: +SKIP
>>> train, val = split_subjects(pairs, 0.2, seed=0)               # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import SimpleITK as sitk

from CMBDetectionLib.imageio.geometry import check_same_grid
from CMBDetectionLib.imageio.subject_files import volumes_by_subject
from CMBDetectionLib.imageio.volumes import read_image_file, read_volume
from CMBDetectionLib.probability.unet.slicing import SliceGrid, normalise_intensity, to_axial
from CMBDetectionLib.training.augmentation import geometric_crop
from CMBDetectionLib.training.randomisation import randomised_sample

LAYOUT_HELP = """accepted layouts of DATA_DIR:
  1. DATA_DIR/<name>_swi.nii.gz + DATA_DIR/<name>_cmb.nii.gz   (as written by cmb-phantom)
  2. DATA_DIR/images/<file> + DATA_DIR/labels/<file>            (same file names; imagesTr/labelsTr also work)
  Volumes may be NIfTI, NRRD or MHA; masks are 0 (background) / non-zero (CMB) on the volume's grid."""


@dataclass(frozen=True)
class TrainingPair:
    name: str
    image: Path
    mask: Path


def _pairs(images: dict[str, Path], masks: dict[str, Path]) -> list[TrainingPair]:
    """One pair per subject key found in both, in the order of ``images``."""
    return [TrainingPair(name, path, masks[name]) for name, path in images.items() if name in masks]


def find_pairs(data_dir: str | os.PathLike) -> list[TrainingPair]:
    """Volume/mask pairs in ``data_dir`` in either accepted layout; ValueError naming the layouts if none."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder. Give the folder holding the training volumes.\n{LAYOUT_HELP}")
    for images, labels in (("images", "labels"), ("imagesTr", "labelsTr")):
        if (root / images).is_dir() and (root / labels).is_dir():
            pairs = _pairs(volumes_by_subject(root / images), volumes_by_subject(root / labels))
            if pairs:
                return pairs
    pairs = _pairs(volumes_by_subject(root, "_swi"), volumes_by_subject(root, "_cmb"))
    if not pairs:
        raise ValueError(f"{root}: no volume/mask pairs found.\n{LAYOUT_HELP}")
    return pairs


def read_labelled(pair: TrainingPair) -> tuple[sitk.Image, np.ndarray]:
    """A pair's volume (validated, float32) and its ground truth as a boolean ``[k, j, i]`` array on that grid."""
    image = read_volume(pair.image)
    mask = read_image_file(pair.mask)
    check_same_grid(mask, image, str(pair.mask), f"its volume {pair.image}")
    return image, sitk.GetArrayFromImage(mask) > 0


def split_subjects(pairs: list[TrainingPair], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """Seeded split by subject: (train, validation); at least one of each when there are two or more subjects."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_val = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs)))) if len(pairs) > 1 else 0
    shuffled = [pairs[i] for i in order]
    return sorted(shuffled[n_val:], key=lambda p: p.name), sorted(shuffled[:n_val], key=lambda p: p.name)


@dataclass
class SliceStack:
    """One subject as model-grid slices: ``images`` ``[k, 256, 256]`` float16, ``masks`` uint8 (memory-mapped)."""

    name: str
    images: np.ndarray
    masks: np.ndarray

    @property
    def positive_slices(self) -> np.ndarray:
        return np.flatnonzero(self.masks.reshape(len(self.masks), -1).max(axis=1))


def preprocess_pair(pair: TrainingPair) -> tuple[np.ndarray, np.ndarray]:
    """Read, reorient, normalise and resample one pair to model-grid slices (images float16, masks uint8)."""
    image = to_axial(read_volume(pair.image))
    mask = read_image_file(pair.mask)
    check_same_grid(to_axial(mask), image, str(pair.mask), f"its volume {pair.image}")
    mask = to_axial(sitk.Cast(mask > 0, sitk.sitkUInt8))
    grid = SliceGrid.for_image(image)
    images = grid.to_model(normalise_intensity(sitk.GetArrayFromImage(image))).astype(np.float16)
    masks = grid.to_model(sitk.GetArrayFromImage(mask), order=0)
    return images, masks


def load_stack(pair: TrainingPair, cache_dir: Path) -> SliceStack:
    """Preprocess once into ``cache_dir`` and memory-map the result."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    image_file, mask_file = cache_dir / f"{pair.name}_img.npy", cache_dir / f"{pair.name}_mask.npy"
    if not (image_file.exists() and mask_file.exists()):
        images, masks = preprocess_pair(pair)
        np.save(mask_file, masks)
        np.save(image_file, images)
    return SliceStack(pair.name, np.load(image_file, mmap_mode="r"), np.load(mask_file, mmap_mode="r"))


def _window(array: np.ndarray, centre: tuple[int, int], size: int) -> np.ndarray:
    """``size`` x ``size`` window of a 2D array centred on ``centre``, zero outside the array."""
    out = np.zeros((size, size), dtype=np.float32)
    top, left = centre[0] - size // 2, centre[1] - size // 2
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + size, array.shape[0]), min(left + size, array.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top : r1 - top, c0 - left : c1 - left] = array[r0:r1, c0:c1]
    return out


def augment_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gamma, contrast, brightness and noise (scanner variability)."""
    image = np.clip(image, 0.0, None) ** rng.uniform(0.7, 1.5)
    image = image * rng.uniform(0.85, 1.15) + rng.uniform(-0.1, 0.1)
    return (image + rng.normal(0.0, rng.uniform(0.0, 0.03), image.shape)).astype(np.float32)


class CropBatches(keras.utils.PyDataset):
    """Batches of ``(crop, crop, 1)`` image/mask crops drawn from subject stacks; reproducible per (seed, epoch, step)."""

    def __init__(
        self,
        stacks: list[SliceStack],
        *,
        batch_size: int = 4,
        crop: int = 128,
        steps: int = 200,
        positive_fraction: float = 0.5,
        augment: bool = True,
        randomise: bool = False,
        seed: int = 0,
        workers: int = 1,
    ):
        # Batches depend only on (seed, epoch, index), so worker processes give the same batches as one.
        super().__init__(workers=workers, use_multiprocessing=workers > 1)
        if crop % 16 or crop < 16:
            raise ValueError(f"crop {crop} must be a positive multiple of 16 (the UNet pools four times).")
        self.stacks, self.batch_size, self.crop, self.steps = stacks, batch_size, crop, steps
        self.positive_fraction, self.augment, self.seed, self.epoch = positive_fraction, augment, seed, 0
        self.randomise = randomise  # domain randomisation (training.randomisation) instead of the paper's augmentation
        self._positives = [(s, k) for s, stack in enumerate(stacks) for k in stack.positive_slices]

    def __len__(self) -> int:
        return self.steps

    def on_epoch_end(self) -> None:
        if self.augment:  # validation batches stay the same every epoch
            self.epoch += 1

    def _centre(self, rng: np.random.Generator) -> tuple[int, int, tuple[int, int]]:
        """(stack, slice, centre pixel) of the next sample."""
        if self._positives and rng.random() < self.positive_fraction:
            s, k = self._positives[rng.integers(len(self._positives))]
            rows, cols = np.nonzero(self.stacks[s].masks[k])
            pick = rng.integers(len(rows))
            jitter = rng.integers(-self.crop // 3, self.crop // 3 + 1, size=2)
            centre = (int(rows[pick] + jitter[0]), int(cols[pick] + jitter[1]))
        else:
            s = rng.integers(len(self.stacks))
            k = rng.integers(len(self.stacks[s].images))
            size = self.stacks[s].images.shape[1]
            centre = tuple(int(v) for v in rng.integers(self.crop // 2, size - self.crop // 2 + 1, size=2))
        return int(s), int(k), centre

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        s, k, centre = self._centre(rng)
        stack = self.stacks[s]
        if not self.augment:
            return _window(stack.images[k], centre, self.crop), _window(stack.masks[k], centre, self.crop)
        if self.randomise:  # needs the neighbouring slices, so it works on the stack
            return randomised_sample(stack.images, stack.masks, k, centre, self.crop, rng)
        flips = (bool(rng.random() < 0.5), bool(rng.random() < 0.5))
        image, mask = geometric_crop(stack.images[k], stack.masks[k], centre, self.crop, rng.uniform(-180.0, 180.0),
                                     flips=flips)
        return augment_intensity(image, rng), mask

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        samples = [self._sample(rng) for _ in range(self.batch_size)]
        images = np.stack([s[0] for s in samples])[..., np.newaxis].astype(np.float32)
        masks = np.stack([s[1] for s in samples])[..., np.newaxis].astype(np.float32)
        return images, masks
