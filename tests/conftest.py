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


TINY_OVERRIDES = [
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
    "decode.max_length=8",
]


@pytest.fixture
def tiny_config(shapes_dir, tmp_path):
    """A config that trains a tiny model on `shapes_dir` in a second or two."""
    return load_config(None, [*TINY_OVERRIDES, f"data.root={shapes_dir}", f"train.out_dir={tmp_path / 'run'}"])


@pytest.fixture(scope="session")
def tiny_checkpoint(shapes_dir, tmp_path_factory):
    """A checkpoint of a tiny model trained for two epochs on `shapes_dir`."""
    from captioner.training import train

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    config = load_config(None, [f"train.out_dir={run}", *TINY_OVERRIDES, f"data.root={shapes_dir}"])
    train(config)
    return run / "checkpoint_best.pt"
