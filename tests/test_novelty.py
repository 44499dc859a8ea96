"""Novelty: the statistics of the training images' encoder features, how export stores them, and the
flag they raise on pictures outside the shapes world (made by the test: photograph-like fields,
pages of text, noise) but not on fresh shapes scenes."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from captioner import novelty
from captioner.assets import BUNDLED_CHECKPOINT
from captioner.checkpoint import load_checkpoint, load_model
from captioner.cli.export import main as export_main
from captioner.data.images import preprocess
from captioner.demo_handlers import CaptionDemo, random_scene

_spec = importlib.util.spec_from_file_location("novelty_benchmark", Path(__file__).parents[1] / "benchmarks" / "novelty.py")
pictures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pictures)


def test_novelty_is_about_one_inside_the_fitted_distribution_and_large_outside():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    train = torch.randn(4000, 6, generator=generator, dtype=torch.float64) @ mixing + 3.0
    held_out = torch.randn(500, 6, generator=generator, dtype=torch.float64) @ mixing + 3.0
    stats = novelty.fit(train, held_out)
    inside = novelty.novelty(stats, held_out)
    assert inside.mean().item() == pytest.approx(1.0, abs=0.1)  # a chi-square over its dimensions
    assert stats["threshold"] == pytest.approx(novelty.MARGIN * torch.quantile(inside, 0.99).item())
    assert (novelty.novelty(stats, held_out + 10 * mixing[0]) > stats["threshold"]).all()  # 10 sd along the data
    assert novelty.check(stats) is stats


def test_a_constant_feature_does_no_harm():
    train = torch.cat([torch.randn(300, 3, dtype=torch.float64), torch.ones(300, 1, dtype=torch.float64)], dim=1)
    stats = novelty.fit(train[:200], train[200:])
    assert torch.isfinite(novelty.novelty(stats, train)).all()


@pytest.mark.parametrize("stats", [None, {}, {"mean": [0.0], "precision": [[1.0]], "threshold": 1.0},
                                   {"mean": torch.zeros(3), "precision": torch.eye(2), "threshold": 1.0}])
def test_malformed_statistics_are_ignored(stats):
    assert novelty.check(stats) is None


def test_export_stores_the_statistics_and_the_page_reports_them(tiny_checkpoint, shapes_dir, tmp_path):
    out = tmp_path / "served.pt"
    export_main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--name", "tiny", "--trained-on", "tiny",
                 "--novelty-images", "24", "--data-root", str(shapes_dir)])
    stats = novelty.check(load_checkpoint(out)["feature_stats"])
    assert stats is not None and stats["images"] == 24 and stats["threshold"] > 0
    demo = CaptionDemo.from_checkpoint(out)
    details = demo.caption(random_scene(np.random.default_rng(3)))[4]
    assert isinstance(details["outside_training"], bool) and details["novelty"] >= 0
    assert details["novelty_threshold"] == pytest.approx(stats["threshold"], abs=1e-4)


@pytest.fixture(scope="module")
def bundled():
    model, _, config, state = load_model(BUNDLED_CHECKPOINT)
    stats = novelty.check(state.get("feature_stats"))
    assert stats is not None, "the bundled checkpoint must carry feature statistics (captioner-export adds them)"
    return model, config.data.image_size, stats


def _novelty(bundled, images) -> torch.Tensor:
    model, size, stats = bundled
    return novelty.novelty(stats, novelty.encode_summaries(model.encoder, [preprocess(i, size) for i in images]))


def test_the_bundled_model_passes_fresh_shapes_scenes(bundled):
    rng = np.random.default_rng(2024)  # not a seed any training data came from
    scores = _novelty(bundled, [random_scene(rng) for _ in range(40)])
    assert (scores <= bundled[2]["threshold"]).all()


@pytest.mark.parametrize("make", [pictures.photo_like, pictures.text_page, pictures.noise],
                         ids=["photograph-like", "text", "noise"])
def test_the_bundled_model_flags_pictures_from_outside_its_world(bundled, make):
    rng = np.random.default_rng(5)
    scores = _novelty(bundled, [make(rng) for _ in range(5)])
    assert (scores > bundled[2]["threshold"]).all()


def test_the_caption_command_reports_novelty_in_json_and_warns_in_plain_output(bundled, tmp_path, capsys):
    from captioner.cli.caption import main as caption_main

    scene, noise = tmp_path / "scene.png", tmp_path / "noise.png"
    random_scene(np.random.default_rng(11)).save(scene)
    pictures.noise(np.random.default_rng(11)).save(noise)
    with pytest.raises(SystemExit) as exit_info:
        caption_main([str(scene), str(noise), "--json"])
    assert exit_info.value.code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["outside_training"] for row in rows] == [False, True]
    assert rows[1]["novelty"] > bundled[2]["threshold"] > rows[0]["novelty"]
    with pytest.raises(SystemExit):
        caption_main([str(noise)])
    assert "noise.png looks unlike the images the model was trained on" in capsys.readouterr().err
