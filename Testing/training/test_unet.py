"""UNet training: data layouts, subject split, CMB oversampling, loss going down, cmb-train with --resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from synthetic_cmb import write_dataset

from CMBDetectionLib.cli.train import main as train_main
from CMBDetectionLib.evaluation.metrics import choose_threshold
from CMBDetectionLib.model_store import load_card, load_unet, sha256_of
from CMBDetectionLib.training.data import CropBatches, TrainingPair, find_pairs, load_stack, split_subjects
from CMBDetectionLib.training.unet import THRESHOLD_GRID, TrainConfig, _split, compiled_unet


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("train") / "data", 4, shape_kji=(8, 64, 64))


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("heldout") / "data", 1, seed0=50, shape_kji=(8, 64, 64))


@pytest.fixture(scope="module")
def stacks(data_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return [load_stack(pair, cache) for pair in find_pairs(data_dir)]


def test_both_layouts_are_found(data_dir, tmp_path):
    assert [p.name for p in find_pairs(data_dir)] == ["syn00", "syn01", "syn02", "syn03"]
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
    for n in (0, 1):
        shutil.copy(data_dir / f"syn0{n}_swi.nii.gz", tmp_path / "images" / f"case{n}.nii.gz")
        shutil.copy(data_dir / f"syn0{n}_cmb.nii.gz", tmp_path / "labels" / f"case{n}.nii.gz")
    assert [p.name for p in find_pairs(tmp_path)] == ["case0", "case1"]
    with pytest.raises(ValueError, match="layouts"):
        find_pairs(tmp_path / "images")


def test_split_is_by_subject_seeded_and_80_20():
    pairs = [TrainingPair(f"s{n}", Path(f"s{n}_swi.nii.gz"), Path(f"s{n}_cmb.nii.gz")) for n in range(10)]
    train, val = split_subjects(pairs, 0.2, seed=3)
    assert len(val) == 2 and set(train) | set(val) == set(pairs) and not set(train) & set(val)
    assert split_subjects(pairs, 0.2, seed=3) == (train, val)
    assert split_subjects(pairs, 0.2, seed=4) != (train, val)


def test_validation_subjects_stay_fixed_when_data_grow(data_dir, tmp_path):
    earlier = tmp_path / "earlier_split.json"
    earlier.write_text(json.dumps({"train": ["syn00", "syn02"], "validation": ["syn03", "syn01"]}))
    as_text = tmp_path / "names.txt"
    as_text.write_text("syn03\n\nsyn01\n")
    for source in (earlier, as_text):
        out = tmp_path / source.stem
        out.mkdir()
        train, val = _split(TrainConfig(str(data_dir), str(out), validation_subjects=str(source)), out)
        assert [p.name for p in val] == ["syn01", "syn03"] and [p.name for p in train] == ["syn00", "syn02"]
        assert json.loads((out / "split.json").read_text())["validation"] == ["syn01", "syn03"]
    for text, message in (("syn01\nsyn99\n", "syn99"), ("\n", "lists no subjects")):
        as_text.write_text(text)
        with pytest.raises(ValueError, match=message):
            _split(TrainConfig(str(data_dir), str(tmp_path), validation_subjects=str(as_text)), tmp_path)
    earlier.write_text("{}")
    with pytest.raises(ValueError, match="'validation' list"):
        _split(TrainConfig(str(data_dir), str(tmp_path), validation_subjects=str(earlier)), tmp_path)


def test_batches_oversample_cmbs_and_are_reproducible(stacks):
    batches = CropBatches(stacks, batch_size=4, crop=48, steps=30, positive_fraction=0.5, seed=1)
    x, y = batches[0]
    assert x.shape == (4, 48, 48, 1) and y.shape == (4, 48, 48, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(batches[0][0], x)
    with_cmb = np.mean([(batches[i][1].reshape(4, -1).max(axis=1) > 0).mean() for i in range(30)])
    # CMB voxels are ~0.1% of these volumes; random crops would rarely hold one.
    assert with_cmb > 0.4
    assert set(np.unique(y)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="multiple of 16"):
        CropBatches(stacks, crop=50)


def test_short_training_lowers_the_loss(stacks):
    import keras

    keras.utils.set_random_seed(0)
    model = compiled_unet(TrainConfig("", "", learning_rate=2e-3, eager=True))
    source = CropBatches(stacks, batch_size=4, crop=32, steps=4, positive_fraction=0.7, seed=2)
    batches = [source[i] for i in range(len(source))]
    losses = [[float(model.train_on_batch(x, y)) for x, y in batches] for _ in range(4)]
    assert np.mean(losses[-1]) < 0.6 * np.mean(losses[0])


def test_cmb_train_writes_card_and_resumes(data_dir, eval_dir, tmp_path):
    out = tmp_path / "model"
    args = [str(data_dir), "-o", str(out), "--crop", "32", "--steps-per-epoch", "2", "--validation-steps", "1",
            "--eval-dir", str(eval_dir), "--eager", "-q"]
    assert train_main(args + ["--epochs", "1"]) == 0
    card = load_card(out)
    assert card["files"]["weights.npz"] == sha256_of(out / "weights.npz")
    assert card["architecture"]["encoder_filters"] == [16, 32, 64, 128]
    assert card["recipe"]["learning_rate"] == 1e-4 and card["recipe"]["batch_size"] == 4
    assert card["metrics"]["validation"]["n_subjects"] == 1 and card["metrics"]["held_out"]["n_subjects"] == 1
    assert "lesion_sensitivity" in card["metrics"]["validation"]["mean"]
    assert card["metrics"]["threshold"] in THRESHOLD_GRID
    assert set(card["metrics"]["validation_by_threshold"]) == {str(t) for t in THRESHOLD_GRID}
    split = json.loads((out / "split.json").read_text())
    assert len(split["train"]) == 3 and len(split["validation"]) == 1
    assert (out / "loss_curve.png").stat().st_size > 1000
    (out / "lesion_filter.json").write_text("{}")  # a filter fitted to the UNet about to be replaced
    assert train_main(args + ["--epochs", "2", "--resume", "--seed", "9"]) == 0
    assert not (out / "lesion_filter.json").exists()
    log_rows = (out / "training_log.csv").read_text().strip().splitlines()
    assert len(log_rows) == 3  # header + epoch 0 + epoch 1 (resumed, appended)
    assert json.loads((out / "split.json").read_text()) == split  # the recorded split is reused
    assert load_card(out)["recipe"]["epochs_done"] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.keras", "state.json"]  # no partial saves


def test_time_limit_stops_after_the_current_epoch(data_dir, tmp_path):
    out = tmp_path / "model"
    assert train_main([str(data_dir), "-o", str(out), "--crop", "32", "--steps-per-epoch", "1", "--validation-steps",
                       "1", "--epochs", "5", "--time-limit", "0.0001", "--eager", "-q"]) == 0
    assert len((out / "training_log.csv").read_text().strip().splitlines()) == 2  # header + the one epoch
    assert load_card(out)["recipe"]["epochs_done"] == 1


def test_init_from_starts_at_the_given_weights_and_records_them(data_dir, tmp_path):
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    common = [str(data_dir), "--crop", "32", "--steps-per-epoch", "1", "--validation-steps", "1", "--epochs", "1",
              "--eager", "-q"]
    assert train_main(common + ["-o", str(base), "--lr", "1e-2"]) == 0
    # A vanishing learning rate leaves the learned weights where --init-from put them (batch-norm statistics
    # still move: the optimiser does not set them).
    assert train_main(common + ["-o", str(tuned), "--init-from", str(base), "--lr", "1e-12", "--randomise"]) == 0
    before, after = load_unet(base).trainable_weights, load_unet(tuned).trainable_weights
    assert len(before) == len(after) > 0
    for b, a in zip(before, after):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-3)
    card = load_card(tuned)
    assert card["initialised_from"]["weights_sha256"] == sha256_of(base / "weights.npz")
    assert card["recipe"]["randomise"] and card["recipe"]["augmentation"].startswith("domain randomisation")
    assert card["paper_recipe"]["learning_rate"] == 1e-4 and not load_card(base)["recipe"]["randomise"]


def test_init_from_refuses_to_overwrite_its_own_folder(data_dir, tmp_path, capsys):
    assert train_main([str(data_dir), "-o", str(tmp_path / "m"), "--init-from", str(tmp_path / "m" / ".")]) == 1
    assert "would be overwritten" in capsys.readouterr().err


def test_operating_threshold_is_the_most_sensitive_within_one_false_positive_per_subject():
    def row(sensitivity: float, fp: float, f1: float) -> dict[str, float]:
        return {"lesion_sensitivity": sensitivity, "fp": fp, "lesion_f1": f1}

    rows = {0.3: [row(0.9, 4, 0.3), row(0.9, 2, 0.3)], 0.5: [row(0.8, 1, 0.6), row(0.8, 1.5, 0.6)],
            0.7: [row(0.8, 0, 0.7), row(0.8, 1, 0.7)], 0.9: [row(0.5, 0, 0.6), row(0.5, 0, 0.6)]}
    assert choose_threshold(rows) == 0.7  # 0.3 and 0.5 exceed 1 FP/subject; 0.7 beats 0.9 on sensitivity
    rows[0.9] = [row(0.8, 0, 0.8), row(0.8, 0, 0.8)]
    assert choose_threshold(rows) == 0.9  # ties go to the higher threshold
    over_budget = {t: [row(0.5, 3, f1), row(0.5, 3, f1)] for t, f1 in ((0.5, 0.4), (0.8, 0.6), (0.9, 0.6))}
    assert choose_threshold(over_budget) == 0.9  # none within budget: the best lesion F1, ties to the higher


def test_thresholds_reaching_the_sensitivity_target_within_budget_compete_on_dice():
    def row(sensitivity: float, fp: float, dice: float) -> dict[str, float]:
        return {"lesion_sensitivity": sensitivity, "fp": fp, "lesion_f1": 0.5, "dice": dice}

    rows = {0.01: [row(0.95, 1.5, 0.6)], 0.02: [row(0.92, 0.9, 0.70)], 0.03: [row(0.91, 0.6, 0.78)],
            0.05: [row(0.89, 0.5, 0.82)]}
    assert choose_threshold(rows) == 0.03  # 0.01 is over budget, 0.05 under target; 0.03 outlines better than 0.02
    assert choose_threshold(rows, min_sensitivity=0.95) == 0.02  # nobody on target: the most sensitive in budget


@pytest.mark.parametrize("extra, message", [
    (["--crop", "50"], "multiple of 16"),
    (["--lr", "-1"], "--lr"),
    (["--resume"], "no checkpoint"),
    (["--time-limit", "0"], "--time-limit"),
    (["--init-from", "x", "--resume"], "cannot be combined"),
    (["--validation-subjects", "nope.json"], "no such file"),
    *((["--method", method, "--val-fraction", "1"], "--val-fraction") for method in ("unet", "lesion-filter", "two-stage")),
])
def test_cmb_train_bad_input(data_dir, tmp_path, capsys, extra, message):
    assert train_main([str(data_dir), "-o", str(tmp_path / "m"), *extra]) == 1
    assert message in capsys.readouterr().err


def test_cmb_train_missing_data(tmp_path, capsys):
    assert train_main([str(tmp_path / "nope"), "-o", str(tmp_path / "m")]) == 1
    assert "not a folder" in capsys.readouterr().err
