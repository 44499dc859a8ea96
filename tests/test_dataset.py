"""The training Dataset's caption draws, the collate function's row order and the image inputs,
decoded per item or preloaded."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from captioner.data.dataset import CaptionDataset, ImageInput, collate
from captioner.data.records import ImageRecord
from captioner.vocab import build_vocab

CAPTIONS = [["a red circle", "one red circle", "there is a red circle"], ["a blue square", "one blue square"]]


def dataset(captions_per_image: int) -> CaptionDataset:
    records = [ImageRecord(str(k), Path(f"{k}.jpg"), "train", c) for k, c in enumerate(CAPTIONS)]
    vocab = build_vocab(c for r in records for c in r.captions)
    inputs = [torch.full((3, 2, 2), float(k)) for k in range(len(records))]
    return CaptionDataset(records, inputs, vocab, max_tokens=10, seed=4, captions_per_image=captions_per_image)


def words(data: CaptionDataset, ids: torch.Tensor) -> str:
    return " ".join(w for w in data.vocab.decode(ids.tolist()) if not w.startswith("<"))


def test_k_captions_are_distinct_references_until_the_image_has_no_more():
    data = dataset(3)
    for epoch in range(5):
        data.set_epoch(epoch)
        first = [words(data, ids) for ids in data[0][1]]
        assert sorted(first) == sorted(CAPTIONS[0])  # all three, each once
        second = [words(data, ids) for ids in data[1][1]]
        assert set(second) == set(CAPTIONS[1]) and second[2] == second[0]  # two, then again from the start
    data.set_epoch(1)
    assert [words(data, ids) for ids in data[0][1]] == [words(data, ids) for ids in data[0][1]]  # fixed per epoch


def test_one_caption_per_image_draws_as_before():
    data = dataset(1)
    data.set_epoch(2)
    (ids,) = data[0][1]
    pick = np.random.default_rng((4, 2, 0)).integers(3)  # the draw runs of earlier versions made
    assert words(data, ids) == CAPTIONS[0][pick]


def test_collate_puts_the_k_captions_of_image_b_in_rows_b_times_k_on():
    data = dataset(2)
    inputs, captions = collate([data[0], None, data[1]], data.vocab.pad)  # None: an unreadable image
    assert inputs[:, 0, 0, 0].tolist() == [0.0, 1.0] and captions.shape[0] == 4
    assert {words(data, captions[r]) for r in (0, 1)} <= set(CAPTIONS[0])
    assert {words(data, captions[r]) for r in (2, 3)} == set(CAPTIONS[1])


def test_preloaded_images_are_the_decoded_ones_and_an_unreadable_one_is_reported_once(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for k, mode in enumerate(["RGB", "L", "RGBA"]):
        path = tmp_path / f"{k}.png"
        Image.fromarray(rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)).convert(mode).save(path)
        paths.append(path)
    truncated = tmp_path / "truncated.jpg"
    Image.new("RGB", (40, 40), (200, 10, 10)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    paths.insert(1, truncated)
    records = [ImageRecord(p.stem, p, "train", ["a red circle"]) for p in paths]

    decoded = ImageInput(records, 16)
    preloaded = ImageInput(records, 16, preload=True)
    assert capsys.readouterr().err.count("truncated.jpg") == 1  # read once, at preload
    for _ in range(2):  # two epochs
        for index in (0, 2, 3):
            assert torch.equal(preloaded[index], decoded[index])
        assert preloaded[1] is None and decoded[1] is None
    err = capsys.readouterr().err
    assert err.count("truncated.jpg") == 2  # the decoding input's two epochs; none from the preloaded one
