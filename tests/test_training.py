import json

import pytest
import torch

from captioner.checkpoint import CheckpointError, load_checkpoint, load_model
from captioner.config import ConfigError
from captioner.training import train


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
    model, vocab, config, _ = load_model(run / "checkpoint_best.pt")
    assert "circle" in vocab.words and config.model.grid_size == 4


def test_resumed_run_ends_with_the_same_weights(tiny_config, tmp_path):
    tiny_config.train.epochs = 3
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


def test_a_new_run_refuses_to_overwrite_an_old_one(tiny_config):
    tiny_config.train.epochs = 1
    train(tiny_config)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_config)


def test_interrupt_saves_the_last_checkpoint(tiny_config, monkeypatch):
    import captioner.training as training

    calls = {"n": 0}
    real = training.train_one_epoch

    def interrupted_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", interrupted_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config)
    state = load_checkpoint(tiny_config.train.out_dir + "/checkpoint_last.pt")
    assert state["epoch"] == 1  # epoch 2 restarts on resume


def test_checkpoint_errors_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    other = tmp_path / "other_version.pt"
    torch.save({"format_version": 99, "model": {}}, other)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(other)
    plain = tmp_path / "state_dict.pt"
    torch.save({"weight": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a captioner checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
