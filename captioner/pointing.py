"""Strict attention pointing: does the word that names an object look at that very object?

Xu et al. 2015 show attention maps qualitatively (§5.4); with object boxes the maps can be scored.
A word is scored when it is the name of an object class present in the image ("circle"). It is a
hit when the argmax of its attention map, taken as the centre of that grid cell in image pixels,
lies inside (edges included) the box of an object that the caption's phrase names: the object's
name and all of its attribute words as written just before it ("a small red circle" names only a
small red circle; data without attributes, like COCO, names any object of the class). A phrase
that names no object of the image ("a large red circle" where the circle is small) scores a miss.

The chance level is the hit rate of a map whose argmax falls on a cell drawn uniformly at random:
for each scored word, the share of grid cells whose centres lie inside a named box.
"""

from collections.abc import Iterable, Sequence

import torch

from captioner.data.images import grid_cell_center
from captioner.data.records import ObjectBox


def phrase_names(obj: ObjectBox, words: Sequence[str], t: int) -> bool:
    """Whether the phrase ending at words[t] names `obj` (its name and every attribute)."""
    k = len(obj.attributes)
    return words[t] == obj.name and set(words[max(0, t - k) : t]) == obj.attributes


def inside(x: float, y: float, bbox, margin: float = 0.0) -> bool:
    """Whether pixel (x, y) lies in the box (x, y, w, h), edges included, grown by `margin`."""
    bx, by, w, h = bbox
    return bx - margin <= x <= bx + w + margin and by - margin <= y <= by + h + margin


def word_hits(
    words: Sequence[str], alphas, objects: Iterable[ObjectBox], grid_size: int, width: int, height: int
) -> list[tuple[int, bool, float]]:
    """(t, hit, chance of a hit) for every scored word words[t] of one caption.

    words: the generated words, without <start>/<end>.
    alphas: array-like (T, P), P = grid_size**2 positions in row-major order, row t for words[t].
    objects: the boxes of the image, bbox (x, y, w, h) in pixels of the width x height image.
    """
    alphas = torch.as_tensor(alphas)
    expected = (len(words), grid_size * grid_size)
    if tuple(alphas.shape) != expected:
        raise ValueError(
            f"alphas must have shape (T, P) = {expected} for {len(words)} words on a "
            f"{grid_size}x{grid_size} grid, got {tuple(alphas.shape)}"
        )
    objects = list(objects)
    names = {obj.name for obj in objects}
    centres = [grid_cell_center(p, grid_size, width, height) for p in range(grid_size * grid_size)]
    scored = []
    for t, position in enumerate(alphas.argmax(dim=1).tolist()):
        if words[t] not in names:
            continue
        boxes = [obj.bbox for obj in objects if phrase_names(obj, words, t)]
        hit = any(inside(*centres[position], box) for box in boxes)
        chance = sum(any(inside(x, y, box) for box in boxes) for x, y in centres) / len(centres)
        scored.append((t, hit, chance))
    return scored


def pointing_hits(
    words: Sequence[str], alphas, objects: Iterable[ObjectBox], grid_size: int, width: int, height: int
) -> tuple[int, int, float]:
    """Strict pointing of one caption (arguments as `word_hits`): (hits, scored words, chance hits
    summed over the scored words)."""
    scored = word_hits(words, alphas, objects, grid_size, width, height)
    return sum(hit for _, hit, _ in scored), len(scored), sum(chance for _, _, chance in scored)


def pointing_scores(counts: Iterable[tuple[int, int, float]]) -> dict[str, float]:
    """"pointing_accuracy" and "pointing_chance", percentages of all scored words over many
    captions (every scored word weighs the same); nan when no word was scored."""
    hits = scored = 0
    chance = 0.0
    for caption_hits, caption_scored, caption_chance in counts:
        hits += caption_hits
        scored += caption_scored
        chance += caption_chance
    if not scored:
        return {"pointing_accuracy": float("nan"), "pointing_chance": float("nan")}
    return {"pointing_accuracy": 100.0 * hits / scored, "pointing_chance": 100.0 * chance / scored}
