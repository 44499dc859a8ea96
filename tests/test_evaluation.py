"""Tests of the caption metrics and the COCO results file."""

import json
import math
import time
from pathlib import Path

import pytest
from pycocoevalcap.spice import get_stanford_models

from captioner.data.records import ImageRecord, ObjectBox
from captioner.evaluation import (
    MetricUnavailable,
    _ptb_tokenize,
    available_metrics,
    caption_metrics,
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


def test_tokenization_is_the_toolkits_and_prints_nothing(capfd):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    predictions = {"1": "A red circle.", "2": "", "3": 'Café, "naïve" (it\'s) -- ok', "4": ""}
    references = {"1": ["A big red circle.", "There is\na big red circle!"], "2": ["a square ..."], "3": ["x"], "4": ["?"]}
    tokens = _ptb_tokenize(predictions, references)
    assert capfd.readouterr() == ("", "")  # Java's "PTBTokenizer tokenized N tokens" line is kept back
    captions = {("res", i): [{"caption": c}] for i, c in predictions.items()}
    captions |= {("gts", i): [{"caption": c} for c in refs] for i, refs in references.items()}
    toolkit = PTBTokenizer().tokenize(captions)
    assert tokens == ({i: toolkit["gts", i] for i in predictions}, {i: toolkit["res", i] for i in predictions})
    assert tokens[1]["1"] == ["a red circle"] and tokens[1]["4"] == [""]


def test_available_metrics_follow_the_data():
    photo = ImageRecord("1", Path("1.png"), "val", ["a dog"])
    scene = ImageRecord("2", Path("2.png"), "val", ["a circle"], [ObjectBox("circle", (0, 0, 8, 8))], exhaustive=True)
    captions = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"]
    assert available_metrics([photo], meteor=False) == captions
    assert available_metrics([photo], spice=True) == captions[:4] + ["METEOR", "ROUGE-L", "CIDEr", "SPICE"]
    assert available_metrics([photo, scene], coco=False) == [
        "exact_accuracy", "exact_accuracy_1obj", "objects_right", "pointing_accuracy", "pointing_chance"
    ]


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


def test_metrics_json_writes_null_for_nan_and_inf():
    from captioner.evaluation import metrics_json

    line = metrics_json({"BLEU-4": 12.5, "val": {"pointing_accuracy": float("nan"), "CIDEr": float("inf")}})
    assert json.loads(line) == {"BLEU-4": 12.5, "val": {"pointing_accuracy": None, "CIDEr": None}}
