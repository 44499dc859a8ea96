"""Attention pointing accuracy split by where the object is named; prints one JSON object.

Every scored word (one naming an object of the image, as `pointing.word_hits` scores them, strictly) is
counted under the number of objects in its scene and its place among the scored words of its
caption: "only", "first", "middle" or "last". Every miss is counted under where its attention
peaked instead: on another object's box, within one grid cell of the named object's box, or
elsewhere. "phrase words" gives, by the same places, how often the attention of each word of the
phrase ("a", "small", "red" before "circle") peaks inside the box that the whole phrase names: a
decoder that has read the object by its colour word may look ahead at its name. "first phrase
looks at" gives, for the captions of two- and three-object scenes whose phrases each name an object
of the scene, where the attention of each word of the first phrase peaks: on the object named
first, second or third, or elsewhere (a decoder that surveys the scene while it names its first
object looks at the others). "first phrase attention on" gives, for the same words, the mean share of
the attention that lies on each of those objects (on the cells whose centres are inside its box):
a word whose peak falls on one object may still read all of them. With greedy decoding, the
checkpoint's own settings.

    python benchmarks/pointing_by_position.py --checkpoint assets/shapes_model.pt \
        --data data/shapes_test --split test --images 300
"""

import argparse
import json
from collections import Counter, defaultdict

import greedy_split

from captioner.data.images import grid_cell_center
from captioner.inference import Failed, caption_files
from captioner.pointing import inside, phrase_names, word_hits


def place(index: int, count: int) -> str:
    if count == 1:
        return "only"
    return "first" if index == 0 else "last" if index == count - 1 else "middle"


def miss_kind(word: str, alpha, objects, grid_size: int, width: int, height: int) -> str:
    """Where the attention of a missed `word` peaked."""
    x, y = grid_cell_center(int(alpha.argmax()), grid_size, width, height)
    if any(inside(x, y, obj.bbox) for obj in objects if obj.name != word):
        return "on another object"
    cell = max(width, height) / grid_size
    if any(inside(x, y, obj.bbox, cell) for obj in objects if obj.name == word):
        return "within a cell of its object"
    return "elsewhere"


def phrase_hits(t: int, words, alphas, objects, grid_size: int, width: int, height: int) -> dict[str, bool]:
    """For each word of the phrase ending at words[t] ("a", "small", "red", "circle"), whether its
    attention peaks inside a box that the whole phrase names."""
    boxes = [obj.bbox for obj in objects if phrase_names(obj, words, t)]
    start = t - max(len(obj.attributes) for obj in objects) - 1  # the article too
    return {"name" if s == t else f"name - {t - s}":
            any(inside(*grid_cell_center(int(alphas[s].argmax()), grid_size, width, height), box) for box in boxes)
            for s in range(max(0, start), t + 1)}


ORDINALS = ("first", "second", "third")


def first_phrase_looks(named, words, alphas, objects, grid_size: int, width: int, height: int):
    """For each word of the first phrase of a caption whose scored words `named` (t, hit, chance)
    each name an object: which object named (by its place in the caption) its attention peaks on,
    and the share of its attention on each of them, {ordinal: share}; {} when some phrase names none."""
    boxes = []
    for t, _, _ in named:
        box = next((obj.bbox for obj in objects if phrase_names(obj, words, t)), None)
        if box is None:
            return {}
        boxes.append(box)
    centres = [grid_cell_center(p, grid_size, width, height) for p in range(grid_size * grid_size)]
    cells = [[p for p, (x, y) in enumerate(centres) if inside(x, y, box)] for box in boxes]
    first = named[0][0]
    looks = {}
    for s in range(max(0, first - 3), first + 1):  # "a", size, colour and the name
        x, y = centres[int(alphas[s].argmax())]
        on = next((ORDINALS[k] for k, box in enumerate(boxes) if inside(x, y, box)), "elsewhere")
        shares = {ORDINALS[k]: float(alphas[s][inner].sum()) for k, inner in enumerate(cells)}
        looks["name" if s == first else f"name - {first - s}"] = on, shares
    return looks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    greedy_split.add_arguments(parser, images=300)
    model, vocab, config, records = greedy_split.load(parser.parse_args())
    results = caption_files(model, vocab, [r.path for r in records], config.data.image_size, config.decode)
    hits, scored, misses, phrase = Counter(), Counter(), Counter(), defaultdict(Counter)
    looks, shares, surveyed = defaultdict(Counter), defaultdict(Counter), Counter()  # keyed by (objects in the scene, phrase word); surveyed by objects in the scene
    for record, result in zip(records, results):
        if isinstance(result, Failed) or not record.objects:
            continue
        best = result.hypotheses[0]
        words = vocab.decode(best.tokens)
        named = word_hits(words, best.alphas, record.objects, model.grid_size, *result.size)
        if len(record.objects) > 1 and named:
            first = first_phrase_looks(named, words, best.alphas, record.objects, model.grid_size, *result.size)
            surveyed[len(record.objects)] += bool(first)
            for word, (on, word_shares) in first.items():
                looks[len(record.objects), word][on] += 1
                shares[len(record.objects), word].update(word_shares)
        for i, (t, hit, _) in enumerate(named):
            key = f"{len(record.objects)} objects, {place(i, len(named))}"
            hits[key] += hit
            scored[key] += 1
            for word, word_hit in phrase_hits(t, words, best.alphas, record.objects, model.grid_size, *result.size).items():
                phrase[key][word] += word_hit
            if not hit:
                misses[miss_kind(words[t], best.alphas[t], record.objects, model.grid_size, *result.size)] += 1
    report = {key: {"words": scored[key], "pointing_accuracy": round(100 * hits[key] / scored[key], 1)} for key in sorted(scored)}
    report["all"] = {"words": sum(scored.values()), "pointing_accuracy": round(100 * sum(hits.values()) / max(1, sum(scored.values())), 1)}
    report["misses"] = dict(misses.most_common())
    report["phrase words"] = {key: {word: round(100 * n / scored[key], 1) for word, n in sorted(phrase[key].items())}
                              for key in sorted(scored)}
    report["first phrase looks at"] = {
        f"{count} objects, {word}": {on: round(100 * n / surveyed[count], 1) for on, n in sorted(on_counts.items())}
        for (count, word), on_counts in sorted(looks.items())}
    report["first phrase attention on"] = {
        f"{count} objects, {word}": {on: round(100 * total / surveyed[count], 1) for on, total in sorted(totals.items())}
        for (count, word), totals in sorted(shares.items())}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
