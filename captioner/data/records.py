"""The one in-memory form every dataset reader produces.

Readers differ only in the file format they parse; everything downstream (vocabulary, torch
Dataset, evaluation) sees lists of `ImageRecord`.
"""

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from captioner.config import ConfigError

SPLITS = ("train", "val", "test")
ON_ERROR = ("raise", "skip")  # data.on_error


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and the problem."""


class EntryProblems:
    """Entries of one annotation file that cannot be used (an empty caption, a missing image file...).

    With on_error "raise" the first is an AnnotationError naming the file and the entry; with "skip"
    each is dropped and counted, and `report()` prints one line for them all.
    """

    def __init__(self, path: Path, on_error: str):
        if on_error not in ON_ERROR:
            raise ConfigError(f"data.on_error: unknown '{on_error}'; known: {', '.join(ON_ERROR)}")
        self.path, self.on_error = path, on_error
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def __call__(self, where: str, kind: str, detail: str = "") -> None:
        """Entry `where` ("annotation id 5") has problem `kind` ("empty caption"), `detail` saying more."""
        if self.on_error == "raise":
            said = f"{kind}: {detail}" if detail else kind
            raise AnnotationError(f"{self.path}: {where}: {said} (data.on_error=skip skips such entries, counted)")
        self.counts[kind] += 1
        self.first.setdefault(kind, where)

    def report(self) -> None:
        if self.counts:
            kinds = ", ".join(f"{n} x {kind} (first: {self.first[kind]})" for kind, n in self.counts.items())
            print(f"note: {self.path}: skipped {self.counts.total()} entries (data.on_error=skip): {kinds}",
                  file=sys.stderr)


@dataclass(frozen=True)
class ObjectBox:
    name: str  # the word that names the object (its category name, e.g. "circle")
    bbox: tuple[float, float, float, float]  # x, y, w, h in pixels of the original image
    attributes: frozenset[str] = frozenset()  # words that describe it besides its name ("small", "red")

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.bbox
        return (x + w / 2, y + h / 2)


@dataclass
class ImageRecord:
    image_id: str  # unique within a dataset
    path: Path  # the image file
    split: str  # "train", "val" or "test"
    captions: list[str]  # raw reference captions, untokenized
    objects: list[ObjectBox] = field(default_factory=list)  # boxes, where the data has them
    # True when `captions` hold every valid phrasing of the image (the shapes world), so that a caption
    # is right exactly when it is one of them; never for human captions (COCO, Flickr).
    exhaustive: bool = False
