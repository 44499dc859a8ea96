import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from captioner.checkpoint import load_model
from captioner.cli.cache_features import main as cache_main
from captioner.config import ConfigError
from captioner.data.feature_cache import FeatureCache, build_feature_cache
from captioner.data.images import load_image, preprocess
from captioner.data.readers import read_split
from captioner.model.encoder import Encoder, SmallCNN
from captioner.training import read_metrics, train


@pytest.fixture
def frozen_config(tiny_config, tmp_path):
    """A frozen small CNN whose weights come from a file, as a cached encoder's must."""
    torch.manual_seed(5)
    torch.save(SmallCNN(tiny_config.model.small_channels).state_dict(), tmp_path / "small_cnn.pt")
    tiny_config.model.weights = str(tmp_path / "small_cnn.pt")
    tiny_config.model.fine_tune_from = "none"
    tiny_config.data.feature_cache = str(tmp_path / "cache")
    return tiny_config


def test_cache_holds_the_encoder_features_as_float16(frozen_config):
    torch.manual_seed(0)
    encoder = Encoder(frozen_config.model).eval()
    records = read_split(frozen_config.data, "train")
    path = build_feature_cache(encoder, frozen_config, "train", records, batch_size=5)
    cached = np.load(path)
    assert cached.dtype == np.float16 and cached.shape == (len(records), 16, 16)
    with torch.no_grad():
        expected = encoder(preprocess(load_image(records[7].path), 64)[None])[0]
    cached_row = FeatureCache(frozen_config, "train", records)[7]
    assert cached_row.dtype == torch.float16
    torch.testing.assert_close(cached_row.float(), expected, atol=2e-2, rtol=1e-2)


def test_an_interrupted_cache_run_continues(frozen_config, monkeypatch):
    torch.manual_seed(0)
    encoder = Encoder(frozen_config.model).eval()
    records = read_split(frozen_config.data, "train")
    calls = {"n": 0}
    real_forward = encoder.forward

    def failing_forward(images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_forward(images)

    monkeypatch.setattr(encoder, "forward", failing_forward)
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(encoder, frozen_config, "train", records, batch_size=8)
    cache = Path(frozen_config.data.feature_cache)
    index = json.loads((cache / "train.json").read_text())
    assert index["done"] == 16
    with pytest.raises(ConfigError, match="incomplete"):
        FeatureCache(frozen_config, "train", records)
    calls["n"] = -100  # no more failures; count the batches the second run encodes
    build_feature_cache(encoder, frozen_config, "train", records, batch_size=8)
    assert calls["n"] + 100 == (len(records) - 16 + 7) // 8  # only the rows after the first 16
    full = np.load(cache / "train.npy")
    for row in (0, len(records) - 1):  # one from each run
        with torch.no_grad():
            expected = real_forward(preprocess(load_image(records[row].path), 64)[None])[0]
        torch.testing.assert_close(torch.from_numpy(full[row].astype(np.float32)), expected, atol=2e-2, rtol=1e-2)


def test_a_cache_made_with_other_settings_is_refused(frozen_config):
    encoder = Encoder(frozen_config.model).eval()
    records = read_split(frozen_config.data, "train")
    build_feature_cache(encoder, frozen_config, "train", records)
    frozen_config.data.image_size = 96
    with pytest.raises(ConfigError, match="image_size"):
        FeatureCache(frozen_config, "train", records)
    frozen_config.data.image_size = 64
    frozen_config.model.grid_size = 2
    with pytest.raises(ConfigError, match="grid_size"):
        FeatureCache(frozen_config, "train", records)


def test_training_reads_the_cache_through_the_command(frozen_config, tmp_path, capsys):
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(frozen_config.to_dict()))
    cache_main(["--config", str(config_file), "--splits", "train"])
    run = train(frozen_config)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_the_cache_needs_a_frozen_encoder_with_weights_on_file(frozen_config, tmp_path):
    frozen_config.model.fine_tune_from = "all"
    with pytest.raises(ConfigError, match="frozen"):
        train(frozen_config)
    frozen_config.model.fine_tune_from = "none"
    frozen_config.model.weights = "none"  # a random encoder: every run would draw another
    for run in (lambda: train(frozen_config), lambda: build_feature_cache(Encoder(frozen_config.model), frozen_config,
                                                                           "train", [])):
        with pytest.raises(ConfigError, match="model.weights=none each run draws its own random encoder"):
            run()


def test_the_cached_encoder_is_the_one_training_saves(frozen_config, tmp_path):
    cache_main(["--config", str(write_config(frozen_config, tmp_path)), "--splits", "train"])
    run = train(frozen_config)
    model, _, _, _ = load_model(run / "checkpoint_last.pt")
    records = read_split(frozen_config.data, "train")
    image = preprocess(load_image(records[3].path), frozen_config.data.image_size)
    with torch.no_grad():
        expected = model.encoder(image[None])[0]
    cached = FeatureCache(frozen_config, "train", records)[3]
    torch.testing.assert_close(cached.float(), expected, atol=2e-2, rtol=1e-2)


def test_a_resumed_cached_run_still_reads_its_cache(frozen_config, tmp_path):
    cache_main(["--config", str(write_config(frozen_config, tmp_path)), "--splits", "train"])
    run = train(frozen_config, stop_after_epoch=1)
    train(frozen_config, resume=run)
    assert [row["epoch"] for row in read_metrics(run)] == [1, 2]


def test_small_cnn_weights_from_a_file_are_loaded_and_a_wrong_file_is_named(frozen_config, tmp_path):
    expected = torch.load(frozen_config.model.weights, weights_only=True)
    loaded = Encoder(frozen_config.model).trunk.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    frozen_config.model.weights = str(tmp_path / "other.pt")
    with pytest.raises(ConfigError, match=r"model.weights: .*other.pt is not a small CNN state_dict"):
        Encoder(frozen_config.model)


def write_config(config, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path
