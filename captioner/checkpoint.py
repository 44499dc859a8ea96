"""Checkpoints as plain dicts: weights, config, vocabulary, training state, a format version.

Nothing is pickled but tensors, numbers, strings, lists and dicts, so checkpoints load with
`torch.load(weights_only=True)` and survive refactors of the code. Writes are atomic: a temp file
in the same folder, then a rename, so a crash never leaves a half-written checkpoint.
"""

import os
from pathlib import Path

import torch

from captioner.config import ConfigError, config_from_dict
from captioner.files import atomic_write
from captioner.model.captioner import Captioner
from captioner.vocab import Vocab

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "model", "config", "vocab")


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and the problem."""


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Writes `state` (see `checkpoint_state`) atomically."""
    with atomic_write(path) as f:
        torch.save(state, f)


def checkpoint_state(model: Captioner, config, vocab: Vocab, **extra) -> dict:
    """The dict every checkpoint holds, plus `extra` (epoch, optimizer, scheduler, rng, meta...)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "config": config.to_dict(),
        "vocab": list(vocab.words),
        **extra,
    }


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, validated; CheckpointError names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} cannot be read: {reason}") from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"checkpoint {path} is not a captioner checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state['format_version']}; "
            f"this captioner reads version {FORMAT_VERSION}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """(model in eval mode on `device`, vocab, config, checkpoint dict) from a checkpoint file.

    The backbone is built without downloading weights: the checkpoint holds all of them.
    """
    state = load_checkpoint(path)
    try:
        config = config_from_dict(state["config"])
        config.model.weights = "none"
        vocab = Vocab(state["vocab"])
        model = Captioner(config.model, len(vocab))
        model.load_state_dict(state["model"])
    except (ConfigError, ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not match this captioner: {reason}") from None
    return model.to(device).eval(), vocab, config, state


def export_model(source: str | os.PathLike, target: str | os.PathLike, meta: dict, **extra) -> None:
    """A slim copy of a checkpoint for serving: weights, config and vocabulary, no optimizer or
    RNG state, plus `meta` (name, training data, figures) shown by the demo page and `extra`
    (feature_stats: see captioner/novelty.py)."""
    state = load_checkpoint(source)
    kept = {key: state[key] for key in (*REQUIRED_KEYS, "epoch") if key in state}
    save_checkpoint(target, kept | {"meta": meta} | extra)
