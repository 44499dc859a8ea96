"""Command-line entry points: argument parsing only; the work is done by the package.

Every command's help shows each option's default (`HelpFormatter`), and an option value that the
package refuses is a usage error, as argparse's own are: the usage line, the message naming the
command's flags rather than the config keys they set (`usage_error`), exit status 2.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import NoReturn

from captioner.config import Config, ConfigError, config_keys, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shapes.yaml"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to the help of each option that is not required, unless the help
    already says it in words (a default of None or "": "the checkpoint's", "none")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def with_flags(message: str, flags: dict[str, str]) -> str:
    """`message` with each config key of `flags` replaced by the command's flag that sets it."""
    for key, flag in flags.items():
        message = re.sub(rf"\b{re.escape(key)}\b", flag, message)
    return message


def usage_error(parser: argparse.ArgumentParser, error: Exception, flags: dict[str, str] | None = None) -> NoReturn:
    """Exits as argparse does for a bad option: usage line, message (keys named as `flags`), status 2."""
    parser.error(with_flags(str(error), flags or {}))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML file overriding the config defaults (default: configs/shapes.yaml, in a source checkout)"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=5; repeatable, applied after --config; "
        "--list-config lists the keys (default: none)",
    )
    parser.add_argument(
        "--list-config", action="store_true",
        help="print every config key that --set accepts, with its default and what it means, and exit",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of `add_config_arguments`: --config (else configs/shapes.yaml, where the source
    tree has it), then the --set overrides."""
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    return load_config(path, args.overrides)


def print_config_keys() -> None:
    """The --list-config table: key, default (as --set writes it), comment."""
    rows = [(key, json.dumps(default), comment) for key, default, comment in config_keys()]
    key_width = max(len(key) for key, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    print("# The keys of --set SECTION.KEY=VALUE (values are read as YAML), with the defaults of the dataclasses")
    print("# in captioner/config.py, which --config (default: configs/shapes.yaml) overrides in part.")
    for key, value, comment in rows:
        print(f"{key:<{key_width}}  {value:<{value_width}}  # {comment}")


def load_model_or_exit(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """(model, vocab, config, checkpoint dict) of --checkpoint on --device: a bad --device is a usage
    error (exit 2), a checkpoint that cannot be used one error line naming it (exit 1)."""
    from captioner.checkpoint import CheckpointError, load_model
    from captioner.devices import resolve_device

    try:
        device = resolve_device(args.device)
    except ConfigError as error:
        parser.error(f"argument --device: {error}")
    try:
        return load_model(args.checkpoint, device)
    except CheckpointError as error:
        sys.exit(f"error: {error}")
