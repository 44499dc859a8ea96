"""Length-grouped training batches: every image once per epoch, batches of similar caption length,
the same global batches for any number of processes."""

import numpy as np
import pytest

from captioner.data.batching import LengthGroupedBatches


class Lengths:
    """A stand-in dataset: caption lengths of 6, 12 or 20 tokens, drawn anew each epoch."""

    def __init__(self, size: int):
        self.size, self.epoch = size, 0

    def __len__(self):
        return self.size

    def caption_length(self, index):
        return (6, 12, 20)[np.random.default_rng((self.epoch, index)).integers(3)]


def batches(dataset, epoch, world=1, rank=0, batch_size=8, group=4):
    dataset.epoch = epoch
    sampler = LengthGroupedBatches(dataset, batch_size, world, rank, seed=3, group=group)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_index_at_most_once_and_whole_batches_only():
    dataset = Lengths(203)
    found = batches(dataset, 0)
    assert len(found) == 203 // 8 and all(len(b) == 8 for b in found)
    flat = [i for b in found for i in b]
    assert len(set(flat)) == len(flat) == 200


def test_batches_pad_far_less_than_a_shuffle():
    dataset = Lengths(800)
    found = batches(dataset, 0, batch_size=16, group=10)
    grouped_steps = np.mean([max(dataset.caption_length(i) for i in b) for b in found])
    shuffled = np.random.default_rng(0).permutation(800).reshape(-1, 16)
    shuffled_steps = np.mean([max(dataset.caption_length(i) for i in b) for b in shuffled])
    real_steps = np.mean([dataset.caption_length(i) for i in range(800)])
    assert shuffled_steps > 19 and grouped_steps < real_steps + 1.5


def test_the_order_changes_with_the_epoch_and_repeats_within_one():
    dataset = Lengths(160)
    assert batches(dataset, 2) == batches(dataset, 2)
    assert batches(dataset, 2) != batches(dataset, 3)


@pytest.mark.parametrize("world", [2, 4])
def test_processes_share_out_the_same_global_batches(world):
    dataset = Lengths(330)
    alone = batches(dataset, 1, batch_size=8 * world)
    ranks = [batches(dataset, 1, world, rank) for rank in range(world)]
    assert all(len(r) == len(alone) for r in ranks)
    for k, whole in enumerate(alone):
        assert sorted(i for r in ranks for i in r[k]) == sorted(whole)


def test_a_group_must_hold_a_batch():
    with pytest.raises(ValueError, match="group"):
        LengthGroupedBatches(Lengths(10), 2, 1, 0, seed=0, group=0)
