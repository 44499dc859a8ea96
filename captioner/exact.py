"""Exact caption accuracy: where the references of an image are every valid phrasing of it (the
shapes world marks its caption files so), a caption is right exactly when it is one of them.

BLEU forgives "left" for "right"; this does not. Captions and references are compared as word
sequences after the vocabulary's tokenization (lower case, punctuation dropped), the same words the
model reads and writes. Human references (COCO, Flickr) are never exhaustive: for them nothing is
reported, rather than a misleading zero.

For shapes scenes the failures are split with `shapes_grammar`: whether the caption names exactly
the scene's objects (the multiset of size-colour-shape phrases), and, of the captions of two or
three objects that do, how many are right, which is then up to their relations.
"""

from collections import Counter
from collections.abc import Iterable

from captioner.data.records import ImageRecord
from captioner.data.shapes_grammar import parse_caption, phrase_of, same_objects
from captioner.vocab import tokenize


def exact_outcome(words: list[str], record: ImageRecord) -> tuple[int, bool, bool] | None:
    """(objects in the scene, caption exact, objects right) for one caption; None when the record's
    references are not exhaustive."""
    if not record.exhaustive:
        return None
    exact = tuple(words) in {tuple(tokenize(caption)) for caption in record.captions}
    objects_right = same_objects(parse_caption(words).objects, [phrase_of(o) for o in record.objects])
    return len(record.objects), exact, objects_right


def exact_scores(outcomes: Iterable[tuple[int, bool, bool]]) -> dict[str, float]:
    """Percentages over many captions: "exact_accuracy"; per object count n, "exact_accuracy_{n}obj";
    "objects_right"; "relations_right" (exact, of the multi-object captions whose objects are right)."""
    outcomes = list(outcomes)
    if not outcomes:
        return {}
    total, exact, objects, related, related_exact = Counter(), Counter(), 0, 0, 0
    for count, is_exact, objects_right in outcomes:
        total[count] += 1
        exact[count] += is_exact
        objects += objects_right
        if objects_right and count > 1:
            related += 1
            related_exact += is_exact
    scores = {"exact_accuracy": 100.0 * sum(exact.values()) / len(outcomes)}
    if any(total.keys() - {0}):  # scenes with object annotations
        scores |= {f"exact_accuracy_{n}obj": 100.0 * exact[n] / total[n] for n in sorted(total) if n}
        scores["objects_right"] = 100.0 * objects / len(outcomes)
        if related:
            scores["relations_right"] = 100.0 * related_exact / related
    return scores
