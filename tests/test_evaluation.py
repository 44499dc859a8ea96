"""Tests of the caption metrics, pointing accuracy and the COCO results file."""

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocoevalcap.spice import get_stanford_models

from captioner.data.records import ObjectBox
from captioner.evaluation import (
    MetricUnavailable,
    caption_metrics,
    pointing_accuracy,
    pointing_hits,
    write_coco_results,
)

METRIC_KEYS = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}

# Capitals and full stops: the PTB tokenizer must lower-case them and drop the punctuation.
REFERENCES = {
    "1": ["A big red circle.", "There is a big red circle."],
    "2": ["A small blue square."],
    "3": ["A green triangle."],
}
EXACT = {"1": "a big red circle", "2": "a small blue square", "3": "a green triangle"}


def _child_pids() -> set[str]:
    tasks = Path("/proc/self/task").glob("*/children")
    return {pid for f in tasks for pid in f.read_text().split()}


# --- caption metrics: each scored call starts two JVMs (tokenizer, METEOR), so they are few ---


@pytest.fixture(scope="module")
def exact_scores():
    return caption_metrics(EXACT, REFERENCES)


@pytest.mark.slow
def test_exact_predictions_score_top(exact_scores):
    assert set(exact_scores) == METRIC_KEYS
    assert exact_scores["BLEU-4"] == pytest.approx(100.0)
    assert exact_scores["ROUGE-L"] == pytest.approx(100.0)
    assert exact_scores["METEOR"] > 90.0  # below 100 only by METEOR's fragmentation penalty
    assert exact_scores["CIDEr"] > 0.0
    assert all(0.0 <= exact_scores[k] <= 100.0 for k in METRIC_KEYS - {"CIDEr"})


@pytest.mark.slow
def test_flawed_predictions_score_lower_with_hand_computed_bleu1(exact_scores):
    children_before = _child_pids()
    flawed = {
        "1": "a red circle",  # one word missing
        "2": "",  # the model ended at once: must not shift the tokenizer's lines
        "3": "a yellow star",  # wrong object
    }
    scores = caption_metrics(flawed, REFERENCES)
    # BLEU-1 = clipped unigram precision * brevity penalty, over the corpus. Candidate length
    # c = 3 + 0 + 3 = 6 of which 3 + 0 + 1 ("a") match; reference length r = 4 + 4 + 3 = 11
    # (image 1 takes its reference closest in length, 4 words, not 6).
    assert scores["BLEU-1"] == pytest.approx(100 * 4 / 6 * math.exp(1 - 11 / 6), rel=1e-6)
    assert all(scores[k] < exact_scores[k] for k in METRIC_KEYS)
    assert _child_pids() <= children_before, "METEOR's java process was left running"


def test_mismatched_ids_raise_naming_the_id():
    with pytest.raises(ValueError, match="'2'"):
        caption_metrics({"1": "a circle"}, {"1": ["a circle"], "2": ["a square"]})
    with pytest.raises(ValueError, match="'9'"):
        caption_metrics({"1": "a circle", "9": "a square"}, {"1": ["a circle"]})


def test_missing_java_raises_metric_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MetricUnavailable, match="Java"):
        caption_metrics(EXACT, REFERENCES)


def test_spice_without_corenlp_fails_fast(monkeypatch, tmp_path):
    # An empty SPICE folder stands for a fresh install, which would try to download CoreNLP.
    monkeypatch.setattr(get_stanford_models, "SPICEDIR", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(MetricUnavailable, match="Stanford CoreNLP.*get_stanford_models"):
        caption_metrics(EXACT, REFERENCES, spice=True)
    assert time.monotonic() - start < 3.0


# --- pointing accuracy ---


def _alphas_at(positions: list[int], grid_size: int) -> np.ndarray:
    """One attention map per word, peaked at the given grid position (row-major)."""
    alphas = np.full((len(positions), grid_size * grid_size), 0.01)
    alphas[np.arange(len(positions)), positions] = 0.5
    return alphas


def test_pointing_hit_and_miss():
    # 4x4 grid over a 100x100 image: cell (row 1, col 2) has its centre at (62.5, 37.5).
    circle = ObjectBox("circle", (50.0, 25.0, 25.0, 25.0))
    words = ["a", "circle", "and", "a", "circle"]
    alphas = _alphas_at([0, 1 * 4 + 2, 0, 0, 3 * 4 + 0], grid_size=4)
    assert pointing_hits(words, alphas, [circle], 4, 100, 100) == (1, 2)


def test_pointing_words_naming_no_present_object_are_not_scored():
    circle = ObjectBox("circle", (0.0, 0.0, 100.0, 100.0))
    words = ["a", "square", "circle"]  # no square in this image
    alphas = _alphas_at([5, 5, 5], grid_size=4)
    assert pointing_hits(words, alphas, [circle], 4, 100, 100) == (1, 1)
    assert pointing_hits(words, alphas, [], 4, 100, 100) == (0, 0)


def test_pointing_maps_cells_of_a_non_square_image():
    # 2x2 grid over a 200 wide, 100 high image: cell (row 0, col 1) has its centre at (150, 25).
    right_top = ObjectBox("circle", (140.0, 20.0, 10.0, 5.0))  # the centre lies on its edges
    left_top = ObjectBox("circle", (40.0, 20.0, 20.0, 10.0))  # where a square image puts it
    alphas = torch.tensor(_alphas_at([1], grid_size=2))
    assert pointing_hits(["circle"], alphas, [right_top], 2, 200, 100) == (1, 1)
    assert pointing_hits(["circle"], alphas, [left_top], 2, 200, 100) == (0, 1)


def test_pointing_any_object_of_the_name_counts():
    left = ObjectBox("circle", (0.0, 0.0, 50.0, 50.0))
    right = ObjectBox("circle", (50.0, 50.0, 50.0, 50.0))
    elsewhere = ObjectBox("circle", (0.0, 50.0, 50.0, 50.0))
    square = ObjectBox("square", (50.0, 50.0, 50.0, 50.0))
    alphas = _alphas_at([3], grid_size=2)  # bottom-right cell
    assert pointing_hits(["circle"], alphas, [left, right], 2, 100, 100) == (1, 1)
    assert pointing_hits(["circle"], alphas, [left, elsewhere, square], 2, 100, 100) == (0, 1)


def test_pointing_rejects_misaligned_alphas():
    with pytest.raises(ValueError, match="shape"):
        pointing_hits(["a", "circle"], _alphas_at([0], grid_size=2), [], 2, 100, 100)


def test_pointing_accuracy_weighs_every_scored_word():
    assert pointing_accuracy([(1, 2), (0, 0), (3, 3)]) == pytest.approx(80.0)
    assert math.isnan(pointing_accuracy([(0, 0)]))
    assert math.isnan(pointing_accuracy([]))


# --- COCO results file ---


def test_write_coco_results_round_trip(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")
    predictions = {"391895": "a man on a bike", "1000268201_693b": "a dog", "007": "a cat"}
    write_coco_results(path, predictions)
    results = json.loads(path.read_text())
    assert results == [
        {"image_id": 391895, "caption": "a man on a bike"},
        {"image_id": "1000268201_693b", "caption": "a dog"},
        {"image_id": "007", "caption": "a cat"},  # kept a string, so it reads back the same
    ]
    assert {str(r["image_id"]): r["caption"] for r in results} == predictions
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
