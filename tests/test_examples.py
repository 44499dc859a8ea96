"""The bundled examples are a shapes test split with its truth, and the bundled model captions every
one of them exactly, greedily and with a beam of 3."""

from pathlib import Path

import pytest

from captioner.app import BUNDLED_CHECKPOINT, EXAMPLES_DIR, example_images
from captioner.checkpoint import load_model
from captioner.data.readers import read_split
from captioner.exact import exact_outcome
from captioner.inference import Captioned, caption_files

EXAMPLES_ROOT = Path(__file__).resolve().parents[1] / "assets" / "examples"


@pytest.fixture(scope="module")
def bundled():
    model, vocab, config, _ = load_model(BUNDLED_CHECKPOINT)
    config.data.root = str(EXAMPLES_ROOT)
    return model, vocab, config


def test_the_examples_are_a_shapes_split_of_one_two_and_three_objects(bundled):
    _, _, config = bundled
    records = read_split(config.data, "test")
    assert 6 <= len(records) <= 8
    assert {len(r.objects) for r in records} == {1, 2, 3}
    assert all(r.exhaustive for r in records)
    assert example_images(EXAMPLES_DIR) == sorted(str(r.path) for r in records)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_bundled_model_captions_every_example_exactly(bundled, beam_size):
    model, vocab, config = bundled
    config.decode.beam_size = beam_size
    records = read_split(config.data, "test")
    results = caption_files(model, vocab, [r.path for r in records], config.data.image_size, config.decode)
    for record, result in zip(records, results):
        assert isinstance(result, Captioned)
        words = vocab.decode(result.hypotheses[0].tokens)
        assert exact_outcome(words, record)[1], f"{record.path.name}: {' '.join(words)}"
