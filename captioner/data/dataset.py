"""The torch Dataset over ImageRecords, and the collate function that pads captions; `ImageFiles`,
the Dataset of image files that captioning and the feature cache read.

An item's input is the preprocessed image, or its cached encoder features when training reads a
feature cache (`ImageInput` or `captioner.data.feature_cache.FeatureCache`). Training draws one
reference caption per image per epoch (or `train.captions_per_image` distinct ones), chosen by
(seed, epoch, index) so a resumed run sees exactly the captions an uninterrupted one would. An
unreadable image is reported once, by name, and dropped from its batch; the rest of the batch goes on.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from captioner.data.images import ImageError, load_image, normalized, preprocess, resized
from captioner.data.records import ImageRecord
from captioner.vocab import Vocab


class ImageFiles(Dataset):
    """Items are (image (3, S, S), index, (width, height)), or (None, index, error message)."""

    def __init__(self, paths: list[Path], image_size: int):
        self.paths = paths
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = load_image(self.paths[index])
        except ImageError as error:
            return None, index, str(error)
        return preprocess(image, self.image_size), index, image.size


class ImageInput:
    """index -> the preprocessed image (3, S, S) of records[index], or None when unreadable.

    With `preload`, every image is decoded and resized here, once, and kept as uint8 pixels
    (3 S^2 bytes an image); an item then costs only the normalisation, and an unreadable image is
    reported once rather than every epoch. The items are the same either way.
    """

    def __init__(self, records: list[ImageRecord], image_size: int, preload: bool = False, show: bool = True):
        self.records = records
        self.image_size = image_size
        self.pixels = None
        if preload:
            bar = tqdm(range(len(records)), desc="loading images", unit="img", leave=False, disable=not show)
            self.pixels = [self._read(index) for index in bar]

    def _read(self, index: int) -> np.ndarray | None:
        try:
            return resized(load_image(self.records[index].path), self.image_size)
        except ImageError as error:
            print(f"error: {error}; skipped", file=sys.stderr)
            return None

    def __getitem__(self, index: int) -> torch.Tensor | None:
        pixels = self._read(index) if self.pixels is None else self.pixels[index]
        return None if pixels is None else normalized(pixels)


class CaptionDataset(Dataset):
    """Items are (input, K caption ids (L,) each), or None when the input cannot be read.

    `inputs[index]` gives the input of records[index]: an ImageInput or a FeatureCache. K is
    `captions_per_image`: distinct references of the image while it has that many, then again.
    """

    def __init__(self, records: list[ImageRecord], inputs, vocab: Vocab, max_tokens: int, seed: int = 0,
                 captions_per_image: int = 1):
        self.records = records
        self.inputs = inputs
        self.vocab = vocab
        self.max_tokens = max_tokens
        self.seed = seed
        self.captions_per_image = captions_per_image
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def caption_ids(self, index: int) -> list[torch.Tensor]:
        return [torch.tensor(ids) for ids in self._encoded(index)]

    def caption_length(self, index: int) -> int:
        """Tokens of the longest caption drawn for `index` this epoch, <start> and <end> included."""
        return max(len(ids) for ids in self._encoded(index))

    def _encoded(self, index: int) -> list[list[int]]:
        captions = self.records[index].captions
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.captions_per_image == 1:  # the draw of runs from before captions_per_image existed
            picks = [rng.integers(len(captions))]
        else:
            picks = np.resize(rng.permutation(len(captions)), self.captions_per_image)
        return [self.vocab.encode(captions[pick], self.max_tokens) for pick in picks]

    def __getitem__(self, index: int):
        x = self.inputs[index]
        return None if x is None else (x, self.caption_ids(index))


def collate(items, pad_id: int):
    """Stacks inputs (B, ...) and pads the items' K captions each to (B*K, L) with pad_id, the
    captions of image b in rows b*K..b*K + K-1; None when no item is left."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    inputs, captions = zip(*items)
    rows = [ids for per_image in captions for ids in per_image]
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad_id)
    return torch.stack(inputs), padded
