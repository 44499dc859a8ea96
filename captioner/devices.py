"""Device names from the command line and config (`train.device`, `--device`) as torch devices."""

import torch

from captioner.config import ConfigError


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda | cuda:N as a torch.device; ConfigError for a name torch does not know or
    a GPU this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r}: not a device name; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
