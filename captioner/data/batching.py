"""Training batches of captions of similar length, so that a batch pads little.

The decoder runs every sentence of a batch for as many steps as the batch's longest caption. In the
shapes world a one-object caption has about 6 tokens and a three-object one about 20, so a shuffled
batch of 64 runs 21 steps for a mean of 12.6 real ones (`python benchmarks/recipe_step.py` shows
what those steps cost). Grouping by length, as fairseq and Hugging Face's `group_by_length` do: each
epoch's shuffled order is cut into groups of `group` global batches, each group is sorted by the
length of the caption this epoch draws for each image, cut into batches, and the batches are shuffled.
A batch then holds captions of a similar length, and which images meet in a batch still changes every
epoch. The order depends on (seed, epoch) only, so every process builds the same global batches and a
resumed run sees the batches an uninterrupted one would.
"""

import numpy as np


class LengthGroupedBatches:
    """A DataLoader batch_sampler: this process's batches of `batch_size` indices of `dataset`.

    `dataset.caption_length(index)` is the length of the caption drawn for `index` this epoch. Each
    global batch of `batch_size * world` indices is dealt to the processes in turn, so that their
    batches are of similar lengths too (no process waits on a longer one in the all-reduce).
    """

    def __init__(self, dataset, batch_size: int, world: int, rank: int, seed: int, group: int):
        if group < 1:
            raise ValueError(f"group must be at least 1 batch, got {group}")
        self.dataset, self.batch_size, self.world, self.rank = dataset, batch_size, world, rank
        self.seed, self.group, self.epoch = seed, group, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset) // (self.batch_size * self.world)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        unit = self.batch_size * self.world
        order = rng.permutation(len(self.dataset))[: len(self) * unit]  # whole global batches only
        lengths = np.array([self.dataset.caption_length(int(i)) for i in order])
        batches = []
        for start in range(0, len(order), self.group * unit):
            chunk = order[start:start + self.group * unit]
            chunk = chunk[np.argsort(-lengths[start:start + len(chunk)], kind="stable")]
            batches += [chunk[i:i + unit] for i in range(0, len(chunk), unit)]
        for b in rng.permutation(len(batches)):
            yield batches[b][self.rank::self.world].tolist()
