"""Novelty: how far an image lies from the training images, in the encoder's feature space.

A captioner can only describe the world it was trained on; given anything else it still writes a
fluent caption in that world's words. To say so beside the caption, each image is summarised by its
annotation vectors a (P, D), channel by channel, as

    s = [mean_i a_i, max_i a_i, std_i a_i, log mean_i a_i^2]    (4D numbers)

what the grid holds on average, at its strongest, how varied it is, and the log of its energy (which
tells a channel that is silent over the whole picture, as on a page of text or a blank one, from one
that is merely weak). Its novelty is the squared Mahalanobis distance of s from the training
images' summaries, per dimension:

    novelty(s) = (s - mu)^T Sigma^-1 (s - mu) / 4D

about 1 or less for images like the training ones. mu and Sigma are fitted on training images
(Sigma with a small ridge, so constant channels such as the cell coordinates do no harm); the
threshold is MARGIN times the 99th percentile of the novelty of held-out images of the same world.
`python benchmarks/novelty.py` prints the figures on shapes scenes, photographs, text and noise.

The statistics travel in the checkpoint under "feature_stats" as plain tensors; `captioner-export`
computes them.
"""

import random

import torch
from tqdm import tqdm

ENERGY_FLOOR = 1e-6  # a channel's mean energy is counted as at least this before its log
RIDGE = 1e-3  # added to Sigma's diagonal, times its mean variance
MARGIN = 2.0  # threshold = MARGIN x the 99th percentile of held-out novelty


def summarize(features: torch.Tensor) -> torch.Tensor:
    """Annotation vectors (B, P, D) -> summaries (B, 4D) in float64."""
    features = features.double()
    energy = features.square().mean(1).clamp_min(ENERGY_FLOOR).log()
    return torch.cat([features.mean(1), features.amax(1), features.std(1), energy], dim=-1)


def fit(train: torch.Tensor, held_out: torch.Tensor) -> dict:
    """The statistics of training summaries (N, K), thresholded on held-out summaries (M, K)."""
    if len(train) < 2 or len(held_out) < 1:
        raise ValueError(f"need at least 2 training and 1 held-out images, got {len(train)} and {len(held_out)}")
    mean = train.mean(0)
    covariance = torch.cov((train - mean).T)
    covariance += RIDGE * covariance.diagonal().mean().clamp_min(1e-12) * torch.eye(len(mean), dtype=train.dtype)
    stats = {"mean": mean, "precision": torch.linalg.inv(covariance), "images": len(train)}
    stats["threshold"] = MARGIN * torch.quantile(novelty(stats, held_out), 0.99).item()
    return stats


def novelty(stats: dict, summaries: torch.Tensor) -> torch.Tensor:
    """(B,) novelty of summaries (B, K) under `stats` (see the module docstring)."""
    d = summaries.double() - stats["mean"]
    return ((d @ stats["precision"]) * d).sum(-1) / len(stats["mean"])


def check(stats: object) -> dict | None:
    """`stats` when it has the shape `fit` gives, else None (a checkpoint without them, or from
    another encoder)."""
    if not isinstance(stats, dict) or not {"mean", "precision", "threshold"} <= stats.keys():
        return None
    mean, precision = stats["mean"], stats["precision"]
    if not (isinstance(mean, torch.Tensor) and isinstance(precision, torch.Tensor)):
        return None
    if mean.dim() != 1 or precision.shape != (len(mean), len(mean)):
        return None
    return stats


@torch.inference_mode()
def encode_summaries(encoder, images, batch_size: int = 64, desc: str | None = None) -> torch.Tensor:
    """Summaries (N, 4D) of a sequence of preprocessed images (3, S, S); None items are skipped."""
    device = next(encoder.parameters()).device
    summaries, batch = [], []
    for image in tqdm(images, desc=desc, unit="img", disable=desc is None):
        if image is not None:
            batch.append(image)
        if len(batch) == batch_size:
            summaries.append(summarize(encoder(torch.stack(batch).to(device))).cpu())
            batch = []
    if batch:
        summaries.append(summarize(encoder(torch.stack(batch).to(device))).cpu())
    return torch.cat(summaries) if summaries else torch.empty(0, dtype=torch.float64)


def fit_on_data(model, data, train_images: int = 2000, held_out_images: int = 500, seed: int = 0) -> dict:
    """Statistics of `model`'s encoder on up to `train_images` training images of `data` (a
    DataConfig), drawn at random with `seed`, thresholded on up to `held_out_images` of its
    validation split. Unreadable images are reported and left out."""
    from captioner.data.dataset import ImageInput  # the data readers only where data is read
    from captioner.data.readers import read_split

    samples = {}
    for split, count in (("train", train_images), ("val", held_out_images)):
        records = read_split(data, split)
        records = random.Random(seed).sample(records, min(count, len(records)))
        inputs = ImageInput(records, data.image_size)
        samples[split] = encode_summaries(model.encoder, (inputs[i] for i in range(len(records))),
                                          desc=f"feature statistics ({split})")
    return fit(samples["train"], samples["val"])
