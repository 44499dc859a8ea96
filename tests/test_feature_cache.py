import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from captioner.cli.cache_features import main as cache_main
from captioner.config import ConfigError
from captioner.data.feature_cache import FeatureCache, build_feature_cache
from captioner.data.images import load_image, preprocess
from captioner.data.readers import read_split
from captioner.model.encoder import Encoder
from captioner.training import train


@pytest.fixture
def frozen_config(tiny_config, tmp_path):
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


def test_the_cache_needs_a_frozen_encoder(tiny_config, tmp_path):
    tiny_config.data.feature_cache = str(tmp_path / "cache")
    with pytest.raises(ConfigError, match="frozen"):
        train(tiny_config)
