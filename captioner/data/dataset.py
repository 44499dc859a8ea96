"""The torch Dataset over ImageRecords, and the collate function that pads captions.

Training draws one reference caption per image per epoch, chosen by (seed, epoch, index) so a
resumed run sees exactly the captions an uninterrupted one would. An unreadable image is reported
once, by name, and dropped from its batch; the rest of the batch goes on.
"""

import sys

import numpy as np
import torch
from torch.utils.data import Dataset

from captioner.data.images import ImageError, load_image, preprocess
from captioner.data.records import ImageRecord
from captioner.vocab import Vocab


class CaptionDataset(Dataset):
    """Items are (image (3, S, S), caption ids (L,), index); None for an unreadable image."""

    def __init__(self, records: list[ImageRecord], vocab: Vocab, image_size: int, max_tokens: int, seed: int = 0):
        self.records = records
        self.vocab = vocab
        self.image_size = image_size
        self.max_tokens = max_tokens
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def caption_ids(self, index: int) -> torch.Tensor:
        captions = self.records[index].captions
        pick = np.random.default_rng((self.seed, self.epoch, index)).integers(len(captions))
        return torch.tensor(self.vocab.encode(captions[pick], self.max_tokens))

    def __getitem__(self, index: int):
        try:
            image = load_image(self.records[index].path)
        except ImageError as error:
            print(f"error: {error}; skipped", file=sys.stderr)
            return None
        return preprocess(image, self.image_size), self.caption_ids(index), index


def collate(items, pad_id: int):
    """Stacks images (B, 3, S, S), pads captions to (B, L) with pad_id, and keeps the indices (B,)."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    images, captions, indices = zip(*items)
    padded = torch.nn.utils.rnn.pad_sequence(captions, batch_first=True, padding_value=pad_id)
    return torch.stack(images), padded, torch.tensor(indices)
