"""Shared fixtures: a tiny shapes dataset and a tiny config, made fresh by the tests themselves."""

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from captioner.config import load_config
from captioner.data.shapes import generate


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """A small synthetic shapes dataset in the real COCO format (64 px images)."""
    out = tmp_path_factory.mktemp("shapes")
    generate(out, {"train": 48, "val": 8, "test": 8}, seed=3, image_size=64)
    return out


# The tiny model every test builds: a 4 x 4 grid of 16 features, a 32-unit LSTM.
TINY_MODEL = dict(small_channels=16, grid_size=4, embed_dim=16, attention_dim=16, decoder_dim=32)

TINY_OVERRIDES = [
    "data.image_size=64",
    "data.num_workers=0",
    *(f"model.{key}={value}" for key, value in TINY_MODEL.items()),
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


# --- The demo page (tests/test_app.py, tests/test_app_browser.py) ---------------------------------


@pytest.fixture(scope="session")
def app_checkpoint():
    """The checkpoint the app tests serve: $CAPTIONER_APP_CHECKPOINT when set, else the bundled model,
    the one every visitor meets (a barely trained model looks the same way for every word)."""
    from pathlib import Path

    from captioner.assets import BUNDLED_CHECKPOINT

    return Path(os.environ.get("CAPTIONER_APP_CHECKPOINT", BUNDLED_CHECKPOINT))


@pytest.fixture(scope="session")
def caption_demo(app_checkpoint):
    """The loaded model and handlers behind the page; the served page uses this very object."""
    from captioner.demo_handlers import CaptionDemo

    return CaptionDemo.from_checkpoint(app_checkpoint)


@pytest.fixture(scope="session")
def hard_demo(shapes_dir, tmp_path_factory):
    """A second model for the page's picker: a tiny one with hard attention, trained for two epochs."""
    from captioner.demo_handlers import CaptionDemo
    from captioner.training import train

    run = tmp_path_factory.mktemp("hard_run") / "run"
    config = load_config(None, [f"train.out_dir={run}", *TINY_OVERRIDES, f"data.root={shapes_dir}",
                                "model.attention=hard"])
    return CaptionDemo.from_checkpoint(train(config) / "checkpoint_best.pt")


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory):
    """Two example scenes (and a file that is not an example) for the page's Examples block."""
    import numpy as np

    from captioner.demo_handlers import random_scene

    folder = tmp_path_factory.mktemp("examples")
    for name, seed in (("b_scene.png", 2), ("a_scene.jpg", 1)):
        random_scene(np.random.default_rng(seed)).save(folder / name)
    (folder / "notes.txt").write_text("not an example")
    return folder


@pytest.fixture(scope="session")
def app_url(caption_demo, hard_demo, example_dir, tmp_path_factory):
    """The page served in-process on a free 127.0.0.1 port, launched once per session, with two
    models to pick from: `caption_demo` (the default) and `hard_demo`."""
    import socket

    from captioner.app import create_demo, launch

    with pytest.MonkeyPatch.context() as env:
        # Both are read when components and Examples are built, so they are set before create_demo.
        env.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio_tmp")))
        env.setenv("GRADIO_EXAMPLES_CACHE", str(tmp_path_factory.mktemp("gradio_examples")))
        page = create_demo(demo=[caption_demo, hard_demo], examples_dir=example_dir)
        with socket.socket() as s:  # launch(server_port=0) fails gradio's own health check
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        launch(page, port=port, prevent_thread_lock=True, quiet=True)
        yield page.local_url
        page.close()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module of tiny tensors (`pytestmark = pytest.mark.usefixtures("one_thread")`):
    a second thread gains nothing there, and on a busy machine threads waiting for each other make
    such a module ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
