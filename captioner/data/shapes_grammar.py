"""Reading a shapes caption back into what it claims: its objects and the relations between them.

The generator (`captioner.data.shapes`) writes every caption from a few templates; this module
inverts them, so that a generated caption can be checked claim by claim against the scene:

    "a small red circle to the left of a large blue square"   circle left of square
    "a large blue square with a small red circle on its left"   circle left of square ("its": the first)
    "A left of B and C below it" / "B with A to its left and C under it"   ("it": B)

An object phrase is "a SIZE COLOUR SHAPE" ("a single" or "one" in place of "a" for a lone object);
a relation word is a direction (left, right) or one of
the words for above or below. Between two object phrases, "with" makes the first object the anchor
of every later relation; otherwise the words between them relate the first to the second, and a
later "... C below it" relates C to the second.
"""

from collections import Counter
from dataclasses import dataclass

from captioner.data.records import ObjectBox
from captioner.data.shapes import COLOURS, SHAPES, SIZES

Phrase = tuple[str, str, str]  # (size, colour, shape), as written
DETERMINERS = ("a", "single", "one")  # the word before an object's size: "a", "a single", "one"
DIRECTION_OF_WORD = {"left": "left", "right": "right", "above": "above", "over": "above", "higher": "above",
                     "below": "below", "under": "below", "beneath": "below"}


@dataclass(frozen=True)
class Claim:
    """One relation a caption states: objects[subject] lies `direction` of objects[anchor]."""

    subject: int  # index into ParsedCaption.objects
    anchor: int
    direction: str | None  # left | right | above | below; None when the words name no direction
    position: int  # index of the word that names the direction (or ends the phrase) in the caption
    anchor_named_before: bool  # True when the anchor's phrase comes before the direction word


@dataclass(frozen=True)
class ParsedCaption:
    objects: tuple[Phrase, ...]  # in the order the caption names them
    claims: tuple[Claim, ...]


def _phrases(words: list[str]) -> list[tuple[int, Phrase]]:
    """(index of the shape word, phrase) of every "a SIZE COLOUR SHAPE" in the words."""
    found = []
    for t in range(3, len(words)):
        article, size, colour, shape = words[t - 3 : t + 1]
        if article in DETERMINERS and size in SIZES and colour in COLOURS and shape in SHAPES:
            found.append((t, (size, colour, shape)))
    return found


def _direction(words: list[str], start: int, stop: int) -> tuple[str | None, int]:
    """The direction named in words[start:stop] and the index of its word (stop - 1 if none)."""
    for t in range(start, stop):
        if words[t] in DIRECTION_OF_WORD:
            return DIRECTION_OF_WORD[words[t]], t
    return None, stop - 1


def parse_caption(words: list[str]) -> ParsedCaption:
    """The objects and relation claims of a caption given as words (no <start>/<end>)."""
    phrases = _phrases(words)
    positions = [t for t, _ in phrases]
    ends = positions[1:] + [len(words) + 3]  # a segment runs from one shape word to the next article
    claims = []
    with_form = len(phrases) > 1 and "with" in words[positions[0] + 1 : positions[1] - 3]
    for k, (t, _) in enumerate(phrases):
        direction, where = _direction(words, t + 1, ends[k] - 3)
        if with_form and k >= 1:  # "B with A to its left [and C under it]": A and C against B
            claims.append(Claim(k, 0, direction, where, True))
        elif not with_form and k == 0 and len(phrases) > 1:  # "A left of B ...": A against B
            claims.append(Claim(0, 1, direction, where, False))
        elif not with_form and k >= 2:  # "... and C under it": C against B
            claims.append(Claim(k, 1, direction, where, True))
    return ParsedCaption(tuple(p for _, p in phrases), tuple(claims))


def same_objects(claimed: tuple[Phrase, ...], truth: list[Phrase]) -> bool:
    """Whether a caption names exactly the scene's objects (as a multiset of phrases)."""
    return Counter(claimed) == Counter(truth)


def phrase_of(box: ObjectBox) -> Phrase:
    """The (size, colour, shape) of a shapes object as its instances file describes it."""
    size = next((a for a in box.attributes if a in SIZES), "")
    colour = next((a for a in box.attributes if a in COLOURS), "")
    return (size, colour, box.name)
