"""The encoder feature cache: a frozen encoder is run once over a dataset, not on every batch.

Each split is stored as `<split>.npy`, a float16 (N, P, D) array read through a memory map, next to
`<split>.json`, its index: the encoder settings it was made with, the image ids in order, how many
rows are done and which images could not be read. Writing goes in batches; the index is saved every
SAVE_EVERY_S seconds and when the run ends, interrupted or not, so a new run continues where it stopped.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from captioner.config import Config, ConfigError
from captioner.data.dataset import ImageFiles
from captioner.data.records import ImageRecord
from captioner.files import atomic_write


def cache_key(config: Config) -> dict:
    """The settings that determine the features; a cache made with others does not fit."""
    m = config.model
    return {
        "backbone": m.backbone, "weights": m.weights, "grid_size": m.grid_size,
        "small_channels": m.small_channels if m.backbone == "small" else None,
        "coordinates": m.coordinates, "image_size": config.data.image_size,
        # None without coordinates, so that caches made before the key existed still fit
        "coordinate_axes": m.coordinate_axes if m.coordinates > 0 else None,
    }


def check_cacheable(config: Config) -> None:
    """A ConfigError unless the encoder's features are fixed: a frozen encoder whose weights come from
    model.weights. With model.weights=none every run draws its own random encoder, so cached features
    would belong to another encoder than the one training saves with the model."""
    if config.model.fine_tune_from != "none":
        raise ConfigError("data.feature_cache needs a frozen encoder: set model.fine_tune_from=none")
    if config.model.weights == "none":
        raise ConfigError(
            "data.feature_cache needs the encoder's weights from model.weights (imagenet or a state_dict file): "
            "with model.weights=none each run draws its own random encoder, and the cached features would not "
            "match the one saved with the model"
        )


def _paths(cache_dir: Path, split: str) -> tuple[Path, Path]:
    return cache_dir / f"{split}.npy", cache_dir / f"{split}.json"


def _check_index(index: dict, config: Config, records: list[ImageRecord], where: Path) -> None:
    key = cache_key(config)
    for name, value in key.items():
        if index["key"].get(name) != value:
            raise ConfigError(
                f"feature cache {where} was made with {name}={index['key'].get(name)!r}, but the config has "
                f"{value!r}; rebuild it with captioner-cache-features or set data.feature_cache to another folder"
            )
    if index["image_ids"] != [r.image_id for r in records]:
        raise ConfigError(f"feature cache {where} holds other images than the dataset's split; rebuild it")


SAVE_EVERY_S = 30  # the index (all image ids) is rewritten this often, not after every batch


@torch.inference_mode()
def build_feature_cache(encoder, config: Config, split: str, records: list[ImageRecord], batch_size: int = 32) -> Path:
    """Writes (or completes) the cache of one split under `config.data.feature_cache`."""
    check_cacheable(config)
    cache_dir = Path(config.data.feature_cache)
    cache_dir.mkdir(parents=True, exist_ok=True)
    array_path, index_path = _paths(cache_dir, split)
    device = next(encoder.parameters()).device
    P, D = config.model.grid_size**2, encoder.feature_dim
    if index_path.exists() and array_path.exists():
        index = json.loads(index_path.read_text())
        _check_index(index, config, records, index_path)
        array = np.load(array_path, mmap_mode="r+")
    else:
        index = {"key": cache_key(config), "image_ids": [r.image_id for r in records], "done": 0, "failed": []}
        array = np.lib.format.open_memmap(array_path, mode="w+", dtype=np.float16, shape=(len(records), P, D))
    files = ImageFiles([r.path for r in records], config.data.image_size)
    remaining = torch.utils.data.Subset(files, range(index["done"], len(records)))
    loader = DataLoader(remaining, batch_size=batch_size, num_workers=config.data.num_workers, collate_fn=list)
    saved = time.monotonic()
    with tqdm(total=len(records), initial=index["done"], desc=f"caching {split}", unit="img") as bar:
        try:
            for items in loader:
                good = [(image, i) for image, i, _ in items if image is not None]
                for image, i, message in items:
                    if image is None:
                        print(f"error: {message}; skipped", file=sys.stderr)
                        index["failed"].append(i)
                if good:
                    features = encoder(torch.stack([image for image, _ in good]).to(device))  # (b, P, D)
                    rows = [i for _, i in good]
                    array[rows] = features.to(torch.float16).cpu().numpy()
                index["done"] += len(items)
                bar.update(len(items))
                if time.monotonic() - saved >= SAVE_EVERY_S:
                    _save(array, index, index_path)
                    saved = time.monotonic()
        finally:  # also on Ctrl-C: the batches finished so far are kept
            _save(array, index, index_path)
    return array_path


def _save(array: np.memmap, index: dict, index_path: Path) -> None:
    array.flush()  # the rows are on disk before the index says so
    with atomic_write(index_path, "w") as f:
        json.dump(index, f)


class FeatureCache:
    """Read-only access to one split's cached features, checked against the config."""

    def __init__(self, config: Config, split: str, records: list[ImageRecord]):
        array_path, index_path = _paths(Path(config.data.feature_cache), split)
        if not index_path.exists():
            raise ConfigError(
                f"data.feature_cache: no cache of split '{split}' in {index_path.parent}; "
                f"make it with captioner-cache-features --config ..."
            )
        index = json.loads(index_path.read_text())
        _check_index(index, config, records, index_path)
        if index["done"] < len(records):
            raise ConfigError(f"feature cache {index_path} is incomplete ({index['done']}/{len(records)}); run captioner-cache-features again to finish it")
        self.failed = set(index["failed"])
        self.array_path = array_path
        self._array = None  # opened in each DataLoader worker, never pickled

    def __getitem__(self, index: int) -> torch.Tensor | None:
        if index in self.failed:
            return None
        if self._array is None:
            self._array = np.load(self.array_path, mmap_mode="r")
        # Stays float16 until the batch reaches its device: half the bytes to copy and stack.
        return torch.from_numpy(np.array(self._array[index]))  # (P, D) float16
