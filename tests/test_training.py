import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL

from captioner import training
from captioner.checkpoint import load_checkpoint, load_model
from captioner.config import ConfigError, ModelConfig, TrainConfig, load_config
from captioner.data.records import AnnotationError, ImageRecord, ObjectBox
from captioner.model.captioner import Captioner
from captioner.sigmoid_energies import energies_in_sigmoid_form
from captioner.training import TRAINING_TRICKS, early_stop_terms, lr_factor, read_metrics, train, trained_form


def test_tiny_training_run_lowers_the_loss_and_writes_the_run(tiny_config):
    tiny_config.train.epochs = 6
    tiny_config.train.lr_decoder = 1e-2
    tiny_config.train.batch_size = 8
    run = train(tiny_config)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == list(range(1, 7))
    assert rows[-1]["train_cross_entropy"] < 0.8 * rows[0]["train_cross_entropy"]
    assert {"BLEU-4", "CIDEr", "exact_accuracy", "exact_accuracy_1obj", "pointing_accuracy", "pointing_chance"} <= rows[-1]["val"].keys()
    assert (run / "config.yaml").exists()
    state = load_checkpoint(run / "checkpoint_last.pt")
    assert state["epoch"] == 6 and state["config"] == tiny_config.to_dict()
    _, vocab, config, _ = load_model(run / "checkpoint_best.pt")
    assert "circle" in vocab.words and config.model.grid_size == 4


def test_validation_without_caption_metrics_reports_the_rest(tiny_config):
    tiny_config.train.epochs = 1
    tiny_config.train.val_caption_metrics = False
    tiny_config.train.early_stop_metric = "exact_accuracy+pointing_accuracy"
    row = read_metrics(train(tiny_config))[0]
    assert {"exact_accuracy", "pointing_accuracy", "images"} <= row["val"].keys()
    assert not {"BLEU-4", "ROUGE-L", "CIDEr"} & row["val"].keys()


@pytest.mark.parametrize("length_groups, captions_per_image, length_chunks", [(0, 1, 1), (2, 1, 1), (0, 3, 1), (0, 2, 3)])
def test_resumed_run_ends_with_the_same_weights(tiny_config, tmp_path, length_groups, captions_per_image, length_chunks):
    tiny_config.train.epochs = 3
    tiny_config.train.length_groups = length_groups
    tiny_config.train.length_chunks = length_chunks
    tiny_config.train.captions_per_image = captions_per_image
    tiny_config.model.dropout = 0.5  # dropout makes the RNG state matter
    tiny_config.train.out_dir = str(tmp_path / "straight")
    straight = load_checkpoint(train(tiny_config) / "checkpoint_last.pt")

    tiny_config.train.out_dir = str(tmp_path / "stopped")
    run = train(tiny_config, stop_after_epoch=1)
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1
    resumed = load_checkpoint(train(tiny_config, resume=run) / "checkpoint_last.pt")

    assert resumed["epoch"] == straight["epoch"] == 3
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0, msg=name)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_a_run_on_preloaded_images_ends_with_the_same_weights(tiny_config, tmp_path):
    tiny_config.train.epochs = 2
    ends = []
    for preload in (False, True):
        tiny_config.data.preload = preload
        tiny_config.train.out_dir = str(tmp_path / f"preload_{preload}")
        ends.append(load_checkpoint(train(tiny_config) / "checkpoint_last.pt")["model"])
    for name, tensor in ends[0].items():
        torch.testing.assert_close(ends[1][name], tensor, rtol=0, atol=0, msg=name)


def test_a_new_run_refuses_to_overwrite_an_old_one(tiny_config):
    tiny_config.train.epochs = 1
    train(tiny_config)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config)


def interrupt_in(epoch: int, step: int, raised: BaseException, monkeypatch):
    """Makes training raise `raised` at the given step (1-based) of the given epoch (1-based)."""
    at = {"epoch": 0, "step": 0}
    real_epoch, real_step = training.train_one_epoch, training.Stepper.__call__

    def one_epoch(stepper, loader, config, index, show):
        at.update(epoch=index + 1, step=0)
        return real_epoch(stepper, loader, config, index, show)

    def one_step(self, micro_batches):
        at["step"] += 1
        if (at["epoch"], at["step"]) == (epoch, step):
            raise raised
        return real_step(self, micro_batches)

    monkeypatch.setattr(training, "train_one_epoch", one_epoch)
    monkeypatch.setattr(training.Stepper, "__call__", one_step)


def test_ctrl_c_mid_epoch_resumes_from_the_epoch_boundary_exactly(tiny_config, tmp_path, monkeypatch, capsys):
    tiny_config.train.epochs = 3
    tiny_config.model.dropout = 0.5  # dropout makes the RNG state matter
    tiny_config.train.out_dir = str(tmp_path / "straight")
    straight = load_checkpoint(train(tiny_config) / "checkpoint_last.pt")

    tiny_config.train.out_dir = str(tmp_path / "interrupted")
    with monkeypatch.context() as patch:
        interrupt_in(2, 2, KeyboardInterrupt(), patch)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config)
    run = tmp_path / "interrupted"
    assert "interrupted in epoch 2: " in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == 1  # the boundary, not a mid-epoch state
    resumed = load_checkpoint(train(tiny_config, resume=run) / "checkpoint_last.pt")
    for name, tensor in straight["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0, msg=name)
    assert [row["epoch"] for row in read_metrics(run)] == [1, 2, 3]


def test_a_loss_that_is_no_longer_finite_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_config, monkeypatch):
    tiny_config.train.epochs = 3
    train(tiny_config, stop_after_epoch=1)
    run = Path(tiny_config.train.out_dir)
    good = (run / "checkpoint_last.pt").read_bytes()
    real_terms = training.loss_terms
    calls = {"n": 0}

    def poisoned(logits, *args):
        calls["n"] += 1
        nll, penalty, tokens = real_terms(logits, *args)
        return (nll * math.nan if calls["n"] == 3 else nll), penalty, tokens

    monkeypatch.setattr(training, "loss_terms", poisoned)
    with pytest.raises(training.TrainingError) as raised:
        train(tiny_config, resume=run)
    message = str(raised.value)
    assert "the loss is no longer finite at epoch 2, step 3 of " in message and "NLL nan" in message
    assert f"{run / 'checkpoint_last.pt'} holds epoch 1" in message
    assert (run / "checkpoint_last.pt").read_bytes() == good
    assert [row["epoch"] for row in read_metrics(run)] == [1]


@pytest.mark.parametrize("override, key", [
    ("data.on_error=ignore", "data.on_error: unknown 'ignore'"),
    ("train.schedule=linear", "train.schedule: unknown 'linear'"),
    ("train.amp=fp8", "train.amp: unknown 'fp8'"),
    ("train.length_groups=-1", "train.length_groups must be >= 0"),
    ("train.length_chunks=0", "train.length_chunks must be >= 1"),
    ("train.captions_per_image=0", "train.captions_per_image must be >= 1"),
    ("train.lr_decoder=0", "train.lr_decoder must be > 0"),
    ("train.attention_entropy=-0.1", "train.attention_entropy must be >= 0"),
    ("train.gamma=2", "train.gamma must be in (0, 1]"),
    ("train.hard_baseline_decay=1", "train.hard_baseline_decay must be in [0, 1)"),
    ("decode.beam_size=0", "decode.beam_size must be >= 1"),
    ("decode.n_best=4", "decode.n_best must be in 1..decode.beam_size"),
])
def test_every_setting_is_checked_before_the_data_is_read(tmp_path, override, key):
    config = load_config(None, [f"data.root={tmp_path / 'nowhere'}", override])
    with pytest.raises(ConfigError) as raised:
        train(config)
    assert str(raised.value).startswith(key)


# --- a newcomer's first runs: short schedules, metrics the data cannot compute, missing data ---


def test_warmup_is_at_most_a_tenth_of_the_run():
    config = TrainConfig(warmup_steps=100, schedule="cosine")
    # 3 epochs of 6 steps: one warm-up step, then the cosine schedule from the full rate.
    factors = [lr_factor(step, 18, 6, config) for step in range(18)]
    assert factors[0] == factors[1] == 1.0
    assert factors[-1] < 0.01 and factors == sorted(factors, reverse=True)
    # A run of 2500 steps keeps its 100 warm-up steps.
    assert lr_factor(49, 2500, 125, config) == pytest.approx(0.5)
    assert lr_factor(100, 2500, 125, config) == 1.0
    # Under 10 steps there is no warm-up at all.
    assert lr_factor(0, 9, 3, config) == 1.0


def _records(exhaustive: bool, boxes: bool) -> list[ImageRecord]:
    objects = [ObjectBox("circle", (0, 0, 8, 8)), ObjectBox("square", (8, 8, 8, 8))] if boxes else []
    return [ImageRecord("1", Path("1.png"), "val", ["a circle"], objects, exhaustive)]


def test_early_stop_metric_must_be_one_the_validation_data_reports():
    shapes, photos = _records(exhaustive=True, boxes=True), _records(exhaustive=False, boxes=False)
    config = TrainConfig(early_stop_metric="exact_accuracy + pointing_accuracy")
    assert early_stop_terms(config, shapes, java=True) == ["exact_accuracy", "pointing_accuracy"]
    assert early_stop_terms(config, shapes, java=False) == ["exact_accuracy", "pointing_accuracy"]
    with pytest.raises(ConfigError, match=r"train.early_stop_metric.*'exact_accuracy'.*not exhaustive.*BLEU-4, METEOR"):
        early_stop_terms(config, photos, java=True)
    with pytest.raises(ConfigError, match="'exact_accuracy_3obj'.*no validation scene"):
        early_stop_terms(TrainConfig(early_stop_metric="exact_accuracy_3obj"), shapes, java=True)
    with pytest.raises(ConfigError, match="'pointing_accuracy'.*no object boxes"):
        early_stop_terms(TrainConfig(early_stop_metric="BLEU-4+pointing_accuracy"), photos, java=True)
    with pytest.raises(ConfigError, match="'METEOR'.*need Java.*can report exact_accuracy, exact_accuracy_2obj"):
        early_stop_terms(TrainConfig(early_stop_metric="METEOR"), shapes, java=False)
    with pytest.raises(ConfigError, match="'BLEU-4'.*train.val_caption_metrics is false"):
        early_stop_terms(TrainConfig(early_stop_metric="BLEU-4", val_caption_metrics=False), shapes, java=True)
    without = TrainConfig(early_stop_metric="exact_accuracy", val_caption_metrics=False)
    assert early_stop_terms(without, shapes, java=True) == ["exact_accuracy"]
    with pytest.raises(ConfigError, match="'SPICE'.*captioner-eval --spice"):
        early_stop_terms(TrainConfig(early_stop_metric="SPICE"), photos, java=True)
    with pytest.raises(ConfigError, match="'BLEU4'.*no such metric"):
        early_stop_terms(TrainConfig(early_stop_metric="BLEU4"), photos, java=True)


def test_a_metric_the_data_cannot_compute_stops_the_run_before_it_starts(tiny_config, monkeypatch):
    monkeypatch.setattr(training, "train_one_epoch", lambda *args: pytest.fail("a step was taken"))
    tiny_config.train.early_stop_metric = "CIDEr+pointing_acuracy"
    with pytest.raises(ConfigError, match="'pointing_acuracy'.*pointing_accuracy"):
        train(tiny_config)
    assert not Path(tiny_config.train.out_dir).exists()


def test_a_nan_metric_still_leaves_a_best_checkpoint_and_null_in_metrics_jsonl(tiny_config, monkeypatch, capsys):
    calls = {"n": 0}

    def first_epoch_unscored(*args, **kwargs):  # as when no caption names an object
        calls["n"] += 1
        return {"pointing_accuracy": math.nan if calls["n"] == 1 else 50.0, "images": 4}

    monkeypatch.setattr(training, "validate", first_epoch_unscored)
    tiny_config.train.early_stop_metric = "pointing_accuracy"
    run = train(tiny_config, stop_after_epoch=1)
    assert load_checkpoint(run / "checkpoint_best.pt")["epoch"] == 1
    err = capsys.readouterr().err
    assert "pointing_accuracy: nothing to score, so checkpoint_best.pt holds this epoch" in err
    assert f"best checkpoint: {run / 'checkpoint_best.pt'} (no epoch has scored pointing_accuracy yet)" in err

    train(tiny_config, resume=run)  # the first scored epoch replaces the stand-in
    assert load_checkpoint(run / "checkpoint_best.pt")["epoch"] == 2
    err = capsys.readouterr().err
    assert f"run folder: {run}\nbest checkpoint: {run / 'checkpoint_best.pt'} (validation pointing_accuracy 50.0)" in err

    def no_bare_nan(name):
        raise AssertionError(f"metrics.jsonl holds a bare {name}")

    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=no_bare_nan) for line in lines]
    assert rows[0]["val"]["pointing_accuracy"] is None and rows[1]["val"]["pointing_accuracy"] == 50.0
    assert math.isnan(read_metrics(run)[0]["val"]["pointing_accuracy"])


def test_missing_data_says_how_to_generate_shapes(tiny_config, tmp_path):
    tiny_config.data.root = str(tmp_path / "shapes")
    command = (f"python -m captioner.data.shapes --out {tmp_path / 'shapes'} --train 8000 --val 500 --test 1000 --seed 1"
               " --train-phrasings ordered")
    with pytest.raises(AnnotationError, match=f"^{tmp_path / 'shapes'}: dataset folder.*not found.*{re.escape(command)}$"):
        train(tiny_config)
    tiny_config.data.root = str(tmp_path / "flickr8k")
    with pytest.raises(AnnotationError, match="flickr8k: dataset folder .data.root. not found$"):
        train(tiny_config)


def test_the_trained_form_has_every_training_trick_but_those_named():
    config = TrainConfig(length_chunks=1)
    conv = lambda model: model.encoder.trunk[0].weight  # noqa: E731
    fast = Captioner(ModelConfig(**TINY_MODEL), 12)
    assert trained_form(fast, config, 0) is fast  # one length chunk: the model itself
    assert conv(fast).is_contiguous(memory_format=torch.channels_last)
    assert fast.decoder.attention.energies.__func__ is energies_in_sigmoid_form

    plain = Captioner(ModelConfig(**TINY_MODEL), 12)
    trained_form(plain, config, 0, without=TRAINING_TRICKS)
    assert conv(plain).is_contiguous() and "energies" not in vars(plain.decoder.attention)
    with pytest.raises(ValueError, match=r"unknown tricks \['fused'\]"):
        trained_form(plain, config, 0, without=("fused",))
