"""Checkpoints as plain dicts: weights, config, vocabulary, training state, a format version.

Nothing is pickled but tensors, numbers, strings, lists and dicts, so checkpoints load with
`torch.load(weights_only=True)` and survive refactors of the code. Writes are atomic: a temp file
in the same folder, then a rename, so a crash never leaves a half-written checkpoint.
"""

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from captioner.config import ConfigError, config_from_dict
from captioner.files import atomic_write
from captioner.model.captioner import Captioner
from captioner.vocab import Vocab

FORMAT_VERSION = 1  # written by this captioner
READABLE_VERSIONS = (1,)  # read by this captioner
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's archive
PICKLE_PROTOCOL = b"\x80"  # torch.save's legacy format: a bare pickle
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
    state = _read(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a captioner checkpoint")
    if "format_version" not in state:
        what = "a bare state_dict" if state and all(torch.is_tensor(v) for v in state.values()) else "a dict"
        keys = ", ".join(map(str, list(state)[:5])) + (", ..." if len(state) > 5 else "")
        raise CheckpointError(f"checkpoint {path} is not a captioner checkpoint: {what} without format_version "
                              f"(keys: {keys or 'none'})")
    if state["format_version"] not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {state['format_version']}; "
            f"this captioner reads format version {', '.join(map(str, READABLE_VERSIONS))}"
        )
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state


def _read(path: Path):
    """torch.load(path) with tensors and plain data only; each way a file can fail, one clear error."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(512)
    if not head.startswith((ZIP_MAGIC, PICKLE_PROTOCOL)):
        text = all(32 <= b < 127 or b in b"\t\r\n" for b in head)
        kind = "a text file" if text else f"a file starting with {head[:8]!r}"
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint: it is {kind}")
    if head.startswith(ZIP_MAGIC) and not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is truncated: its archive has no end ({size} bytes); "
                              "it was not written or copied completely")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe is None:
            raise CheckpointError(f"checkpoint {path} is damaged: {_first_line(error)}") from None
        # torch's message advises loading it unsafely: the one thing not to do with a file from elsewhere.
        raise CheckpointError(
            f"checkpoint {path} is refused: it holds a Python object ({unsafe.group(1)}), and loading it would "
            "run code the file names; captioner checkpoints hold only tensors and plain data (nothing was run)"
        ) from None
    except Exception as error:  # torch raises many types for a damaged archive or pickle
        raise CheckpointError(f"checkpoint {path} is damaged: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
        raise CheckpointError(f"checkpoint {path} does not match this captioner: {_first_line(error)}") from None
    return model.to(device).eval(), vocab, config, state


def export_model(source: str | os.PathLike, target: str | os.PathLike, meta: dict, **extra) -> None:
    """A slim copy of a checkpoint for serving: weights, config and vocabulary, no optimizer or
    RNG state, plus `meta` (name, training data, figures) shown by the demo page and `extra`
    (feature_stats: see captioner/novelty.py)."""
    state = load_checkpoint(source)
    kept = {key: state[key] for key in (*REQUIRED_KEYS, "epoch") if key in state}
    save_checkpoint(target, kept | {"meta": meta} | extra)
