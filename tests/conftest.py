"""Shared fixtures: a tiny shapes dataset and a tiny config, made fresh by the tests themselves."""

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from captioner.config import load_config  # noqa: E402
from captioner.data.shapes import generate  # noqa: E402


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """A small synthetic shapes dataset in the real COCO format (64 px images)."""
    out = tmp_path_factory.mktemp("shapes")
    generate(out, {"train": 48, "val": 8, "test": 8}, seed=3, image_size=64)
    return out


@pytest.fixture
def tiny_config(shapes_dir, tmp_path):
    """A config that trains a tiny model on `shapes_dir` in a second or two."""
    return load_config(
        None,
        [
            f"data.root={shapes_dir}",
            "data.image_size=64",
            "data.num_workers=0",
            "model.small_channels=16",
            "model.grid_size=4",
            "model.embed_dim=16",
            "model.attention_dim=16",
            "model.decoder_dim=32",
            "train.epochs=2",
            "train.batch_size=16",
            "train.warmup_steps=2",
            "train.val_images=4",
            "train.device=cpu",
            f"train.out_dir={tmp_path / 'run'}",
            "decode.max_length=8",
        ],
    )
