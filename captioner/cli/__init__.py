"""Command-line entry points: argument parsing only; the work is done by the package."""

import argparse
from pathlib import Path

from captioner.config import Config, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shapes.yaml"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file overriding the defaults (default: configs/shapes.yaml)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.epochs=5 (repeatable; applied after --config)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of `add_config_arguments`: --config (else configs/shapes.yaml, where the source
    tree has it), then the --set overrides."""
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    return load_config(path, args.overrides)
