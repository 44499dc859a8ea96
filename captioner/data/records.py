"""The one in-memory form every dataset reader produces.

Readers differ only in the file format they parse; everything downstream (vocabulary, torch
Dataset, evaluation) sees lists of `ImageRecord`.
"""

from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and the problem."""


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
