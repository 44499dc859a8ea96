"""The set-up the caption analyses share: a checkpoint, the first N images of a split, and the
checkpoint's own settings with greedy decoding, from the same four options."""

import argparse

from captioner.checkpoint import load_model
from captioner.data.readers import read_split


def add_arguments(parser: argparse.ArgumentParser, images: int) -> None:
    parser.add_argument("--checkpoint", default="assets/shapes_model.pt")
    parser.add_argument("--data", default="data/shapes_test", help="a dataset folder with object boxes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--images", type=int, default=images, help="the first N images of the split (0 = all)")


def load(args: argparse.Namespace):
    """(model in eval mode, vocab, config set to greedy decoding on args.data, records)."""
    model, vocab, config, _ = load_model(args.checkpoint)
    config.data.root = args.data
    config.decode.beam_size = 1
    return model, vocab, config, read_split(config.data, args.split)[: args.images or None]
