"""Exact caption accuracy and the shapes grammar that reads captions back into claims."""

from pathlib import Path

import numpy as np
import pytest

from captioner.data.records import ImageRecord, ObjectBox
from captioner.data.shapes import describe, make_scene, relation
from captioner.data.shapes_grammar import parse_caption, phrase_of
from captioner.exact import exact_outcome, exact_scores
from captioner.vocab import tokenize


def _record(scene, exhaustive: bool = True) -> ImageRecord:
    objects = [ObjectBox(o.shape, o.bbox, frozenset({o.size, o.colour})) for o in scene.objects]
    return ImageRecord("1", Path("x.jpg"), "test", describe(scene), objects, exhaustive)


def _scene(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    while True:
        scene = make_scene(rng)
        if len(scene.objects) == count:
            return scene


@pytest.mark.parametrize("seed", range(20))
def test_every_reference_parses_into_true_claims(seed):
    scene = make_scene(np.random.default_rng(seed))
    record = _record(scene)
    truth = {phrase_of(o): o for o in record.objects}
    for caption in record.captions:
        parsed = parse_caption(tokenize(caption))
        assert sorted(parsed.objects) == sorted(truth)
        assert len(parsed.claims) == len(scene.objects) - 1
        for claim in parsed.claims:
            subject, anchor = truth[parsed.objects[claim.subject]], truth[parsed.objects[claim.anchor]]
            assert claim.direction == relation(subject, anchor), caption


def test_anchor_order_of_claims():
    words = tokenize("a small red circle left of a large blue square and a small green triangle under it")
    claims = parse_caption(words).claims
    assert [(c.subject, c.anchor, c.direction, c.anchor_named_before) for c in claims] == [
        (0, 1, "left", False), (2, 1, "below", True)]
    assert words[claims[0].position] == "left" and words[claims[1].position] == "under"
    words = tokenize("a large blue square with a small red circle on its left")
    assert [(c.subject, c.anchor, c.direction) for c in parse_caption(words).claims] == [(1, 0, "left")]


def test_any_phrasing_of_the_scene_is_exact():
    record = _record(_scene(3))
    for caption in record.captions:
        assert exact_outcome(tokenize(caption.upper() + "."), record) == (3, True, True)


def test_a_swapped_relation_or_colour_is_not_exact():
    scene = _scene(2)
    record = _record(scene)
    caption = tokenize(record.captions[0])
    direction = next(w for w in caption if w in {"left", "right", "above", "below"})
    opposite = {"left": "right", "right": "left", "above": "below", "below": "above"}[direction]
    swapped = [opposite if w == direction else w for w in caption]
    assert exact_outcome(swapped, record) == (2, False, True)  # objects right, relation wrong
    colour = scene.objects[0].colour
    other = "green" if colour != "green" else "red"
    recoloured = [other if w == colour else w for w in caption]
    assert exact_outcome(recoloured, record) == (2, False, False)


def test_references_that_are_not_exhaustive_report_nothing():
    record = _record(_scene(1), exhaustive=False)
    assert exact_outcome(tokenize(record.captions[0]), record) is None
    assert exact_scores([]) == {}


def test_exact_scores_break_down_by_object_count_and_cause():
    outcomes = [(1, True, True), (1, False, False), (2, True, True), (2, False, True), (3, False, False)]
    scores = exact_scores(outcomes)
    assert scores["exact_accuracy"] == pytest.approx(40.0)
    assert scores["exact_accuracy_1obj"] == pytest.approx(50.0)
    assert scores["exact_accuracy_2obj"] == pytest.approx(50.0)
    assert scores["exact_accuracy_3obj"] == pytest.approx(0.0)
    assert scores["objects_right"] == pytest.approx(60.0)
    assert scores["relations_right"] == pytest.approx(50.0)  # of the two multi-object captions with right objects
