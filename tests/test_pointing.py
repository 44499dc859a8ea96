"""Strict attention pointing on hand-made attention maps."""

import math

import numpy as np
import pytest
import torch

from captioner.data.records import ObjectBox
from captioner.pointing import pointing_hits, pointing_scores


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
    assert pointing_hits(words, alphas, [circle], 4, 100, 100)[:2] == (1, 2)


def test_pointing_words_naming_no_present_object_are_not_scored():
    circle = ObjectBox("circle", (0.0, 0.0, 100.0, 100.0))
    words = ["a", "square", "circle"]  # no square in this image
    alphas = _alphas_at([5, 5, 5], grid_size=4)
    assert pointing_hits(words, alphas, [circle], 4, 100, 100)[:2] == (1, 1)
    assert pointing_hits(words, alphas, [], 4, 100, 100)[:2] == (0, 0)


def test_pointing_maps_cells_of_a_non_square_image():
    # 2x2 grid over a 200 wide, 100 high image: cell (row 0, col 1) has its centre at (150, 25).
    right_top = ObjectBox("circle", (140.0, 20.0, 10.0, 5.0))  # the centre lies on its edges
    left_top = ObjectBox("circle", (40.0, 20.0, 20.0, 10.0))  # where a square image puts it
    alphas = torch.tensor(_alphas_at([1], grid_size=2))
    assert pointing_hits(["circle"], alphas, [right_top], 2, 200, 100)[:2] == (1, 1)
    assert pointing_hits(["circle"], alphas, [left_top], 2, 200, 100)[:2] == (0, 1)


def test_pointing_without_attributes_any_object_of_the_name_counts():
    left = ObjectBox("circle", (0.0, 0.0, 50.0, 50.0))
    right = ObjectBox("circle", (50.0, 50.0, 50.0, 50.0))
    elsewhere = ObjectBox("circle", (0.0, 50.0, 50.0, 50.0))
    square = ObjectBox("square", (50.0, 50.0, 50.0, 50.0))
    alphas = _alphas_at([3], grid_size=2)  # bottom-right cell
    assert pointing_hits(["circle"], alphas, [left, right], 2, 100, 100)[:2] == (1, 1)
    assert pointing_hits(["circle"], alphas, [left, elsewhere, square], 2, 100, 100)[:2] == (0, 1)


def test_pointing_rejects_misaligned_alphas():
    with pytest.raises(ValueError, match="shape"):
        pointing_hits(["a", "circle"], _alphas_at([0], grid_size=2), [], 2, 100, 100)


def test_pointing_is_strict_about_the_phrase():
    # Two circles; the attention of "circle" peaks on the large blue one (bottom-right cell).
    red = ObjectBox("circle", (0.0, 0.0, 50.0, 50.0), frozenset({"small", "red"}))
    blue = ObjectBox("circle", (50.0, 50.0, 50.0, 50.0), frozenset({"large", "blue"}))
    alphas = _alphas_at([0, 0, 0, 3], grid_size=2)
    assert pointing_hits(["a", "large", "blue", "circle"], alphas, [red, blue], 2, 100, 100)[:2] == (1, 1)
    assert pointing_hits(["a", "small", "red", "circle"], alphas, [red, blue], 2, 100, 100)[:2] == (0, 1)
    # A phrase that names no object of the image (the blue circle is large) is a miss.
    assert pointing_hits(["a", "small", "blue", "circle"], alphas, [red, blue], 2, 100, 100)[:2] == (0, 1)


def test_pointing_chance_is_the_share_of_cells_inside_the_named_box():
    # 4x4 grid over 100x100: a 50x50 box at the origin holds the centres of 4 of the 16 cells.
    red = ObjectBox("circle", (0.0, 0.0, 50.0, 50.0), frozenset({"red"}))
    blue = ObjectBox("circle", (50.0, 0.0, 50.0, 100.0), frozenset({"blue"}))
    alphas = _alphas_at([0, 0], grid_size=4)
    hits, scored, chance = pointing_hits(["red", "circle"], alphas, [red, blue], 4, 100, 100)
    assert (hits, scored) == (1, 1) and chance == pytest.approx(4 / 16)
    hits, scored, chance = pointing_hits(["blue", "circle"], alphas, [red, blue], 4, 100, 100)
    assert (hits, scored) == (0, 1) and chance == pytest.approx(8 / 16)


def test_pointing_scores_weigh_every_scored_word():
    scores = pointing_scores([(1, 2, 0.5), (0, 0, 0.0), (3, 3, 0.3)])
    assert scores["pointing_accuracy"] == pytest.approx(80.0)
    assert scores["pointing_chance"] == pytest.approx(16.0)
    assert math.isnan(pointing_scores([(0, 0, 0.0)])["pointing_accuracy"])
    assert math.isnan(pointing_scores([])["pointing_chance"])
