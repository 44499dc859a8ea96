"""Captioning image files in batches: what evaluation, the CLI, the demo and training's validation run.

Images are read by DataLoader workers with the one `load_image` + `preprocess`; a file that cannot
be read yields a `Failed` result naming it, and the other images of its batch are captioned.
Decoding goes through an `InferenceEngine`, built once per `caption_files` call from the model's
weights as they are then (or passed in, already built).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from captioner import novelty
from captioner.config import DecodeConfig
from captioner.data.dataset import ImageFiles
from captioner.decoding import Hypothesis, search
from captioner.engine import InferenceEngine
from captioner.model.captioner import Captioner
from captioner.vocab import Vocab


@dataclass
class Captioned:
    path: Path
    hypotheses: list[Hypothesis]  # best first
    size: tuple[int, int]  # (width, height) of the image as loaded
    novelty: float | None = None  # how far from the training images (captioner/novelty.py), when known


@dataclass
class Failed:
    path: Path
    error: str  # one line naming the file and the problem


@torch.inference_mode()
def caption_batch(engine: InferenceEngine, vocab: Vocab, images: torch.Tensor, decode: DecodeConfig,
                  generator: torch.Generator | None = None, feature_stats: dict | None = None):
    """(the n-best hypotheses of each preprocessed image of images (B, 3, S, S), the novelty of each
    under `feature_stats`, or None for each without them)."""
    features = engine.encode(images)  # (B, P, D)
    hypotheses = search(engine, features, vocab, decode, generator)
    if feature_stats is None:
        return hypotheses, [None] * len(hypotheses)
    return hypotheses, novelty.novelty(feature_stats, novelty.summarize(features).cpu()).tolist()


def caption_files(
    model: Captioner | InferenceEngine,
    vocab: Vocab,
    paths: list[Path],
    image_size: int,
    decode: DecodeConfig,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = False,
    seed: int | None = None,
    feature_stats: dict | None = None,
) -> Iterator[Captioned | Failed]:
    """Captions `paths` in order, one result per path, with `model` (in eval mode) or an engine built
    from it; `seed` seeds sampling, on the model's device (None: torch's global generator); with
    `feature_stats` each result carries its novelty."""
    engine = model if isinstance(model, InferenceEngine) else InferenceEngine(model)
    generator = None if seed is None else torch.Generator(engine.device).manual_seed(seed)
    loader = DataLoader(ImageFiles(list(paths), image_size), batch_size=batch_size, num_workers=num_workers, collate_fn=list)  # failures are split off before stacking
    with tqdm(total=len(paths), desc="captioning", unit="img", disable=not progress) as bar:
        for items in loader:
            good = [(image, i, size) for image, i, size in items if image is not None]
            results: dict[int, Captioned | Failed] = {
                i: Failed(loader.dataset.paths[i], message) for image, i, message in items if image is None
            }
            if good:
                images = torch.stack([image for image, _, _ in good])
                hypotheses, novelties = caption_batch(engine, vocab, images, decode, generator, feature_stats)
                for (_, i, size), found, score in zip(good, hypotheses, novelties):
                    results[i] = Captioned(loader.dataset.paths[i], found, size, score)
            for _, i, _ in items:
                yield results[i]
            bar.update(len(items))
