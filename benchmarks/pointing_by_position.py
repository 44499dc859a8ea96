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
object looks at the others). "by candidates" splits the scored words by how many objects their
attention could still single out: f_att reads h_{t-1}, the state that has read the caption up to
two words before the name ("a small" of "a small red circle"), so the candidates are the objects not
named before whose attributes include the phrase's words read so far; "candidate shares" gives the
mean share of the attention on the named object, on the other candidates and on the objects that are
not candidates. "first phrase attention on" gives, for the same words, the mean share of
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


def candidates(t: int, words, objects, earlier: set[int]) -> list[int]:
    """The objects (indices into `objects`) that the attention of the scored word words[t] could
    still take it to name: not named by an `earlier` phrase, and with every attribute word that its
    query has read among their attributes."""
    k = max(len(obj.attributes) for obj in objects)
    read = set(words[max(0, t - k) : max(0, t - 1)])  # the query h_{t-1} has read up to words[t - 2]
    return [i for i, obj in enumerate(objects) if i not in earlier and read <= obj.attributes]


def object_cells(objects, grid_size: int, width: int, height: int) -> list[list[int]]:
    """For each object, the grid cells whose centres lie inside its box."""
    centres = [grid_cell_center(p, grid_size, width, height) for p in range(grid_size * grid_size)]
    return [[p for p, (x, y) in enumerate(centres) if inside(x, y, obj.bbox)] for obj in objects]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    greedy_split.add_arguments(parser, images=300)
    model, vocab, config, records = greedy_split.load(parser.parse_args())
    results = caption_files(model, vocab, [r.path for r in records], config.data.image_size, config.decode)
    hits, scored, misses, phrase = Counter(), Counter(), Counter(), defaultdict(Counter)
    pool_hits, pool_scored, pool_shares = Counter(), Counter(), defaultdict(Counter)  # keyed by objects and candidates
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
        earlier, cells = set(), object_cells(record.objects, model.grid_size, *result.size)
        for i, (t, hit, _) in enumerate(named):
            key = f"{len(record.objects)} objects, {place(i, len(named))}"
            target = next((j for j, obj in enumerate(record.objects) if phrase_names(obj, words, t)), None)
            if target is not None:
                pool = candidates(t, words, record.objects, earlier)
                by_pool = f"{len(record.objects)} objects, {len(pool)} candidates"
                pool_hits[by_pool] += hit
                pool_scored[by_pool] += 1
                alpha = best.alphas[t]
                pool_shares[by_pool].update({
                    "named": float(alpha[cells[target]].sum()),
                    "other candidates": sum(float(alpha[cells[j]].sum()) for j in pool if j != target),
                    "not candidates": sum(float(alpha[cells[j]].sum()) for j in range(len(cells)) if j not in pool)})
                earlier.add(target)
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
    report["by candidates"] = {key: {"words": pool_scored[key], "pointing_accuracy": round(100 * pool_hits[key] / pool_scored[key], 1)}
                               for key in sorted(pool_scored)}
    report["candidate shares"] = {key: {on: round(100 * total / pool_scored[key], 1) for on, total in totals.items()}
                                  for key, totals in sorted(pool_shares.items())}
    report["first phrase looks at"] = {
        f"{count} objects, {word}": {on: round(100 * n / surveyed[count], 1) for on, n in sorted(on_counts.items())}
        for (count, word), on_counts in sorted(looks.items())}
    report["first phrase attention on"] = {
        f"{count} objects, {word}": {on: round(100 * total / surveyed[count], 1) for on, total in sorted(totals.items())}
        for (count, word), totals in sorted(shares.items())}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
