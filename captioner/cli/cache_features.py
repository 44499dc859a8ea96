"""`captioner-cache-features`: run a frozen encoder once over a dataset and store its features."""

import argparse
import sys

from captioner.cli import (
    HelpFormatter,
    add_config_arguments,
    config_from_args,
    positive_int,
    print_config_keys,
    usage_error,
)
from captioner.config import ConfigError
from captioner.data.feature_cache import build_feature_cache
from captioner.data.readers import read_split
from captioner.data.records import SPLITS, AnnotationError
from captioner.devices import resolve_device
from captioner.model.encoder import Encoder


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Cache the encoder features of a dataset (frozen encoders only); training reads them "
        "when data.feature_cache names the folder. Interrupted runs continue where they stopped.",
        formatter_class=HelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--splits", nargs="+", default=["train"], choices=SPLITS, help="splits to cache (default: train)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images encoded per forward pass")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.list_config:
        print_config_keys()
        return
    try:
        device = resolve_device(args.device)
    except ConfigError as error:
        parser.error(f"argument --device: {error}")
    try:
        config = config_from_args(args)
        if not config.data.feature_cache:
            raise ConfigError(
                "data.feature_cache is empty: name the cache folder, e.g. --set data.feature_cache=cache/coco"
            )
        encoder = Encoder(config.model).to(device).eval()
        for split in args.splits:
            path = build_feature_cache(encoder, config, split, read_split(config.data, split), args.batch_size)
            print(path)
    except ConfigError as error:
        usage_error(parser, error)
    except AnnotationError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
