"""`captioner-train` / `python train.py`: train a captioner, or resume a run."""

import argparse
import sys

from captioner.checkpoint import CheckpointError
from captioner.cli import (
    HelpFormatter,
    add_config_arguments,
    config_from_args,
    positive_int,
    print_config_keys,
    usage_error,
)
from captioner.config import ConfigError, load_config
from captioner.data.records import AnnotationError
from captioner.training import TrainingError, train


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a Show, Attend and Tell captioner. The config is the dataclass defaults, then --config, "
        "then --set; --list-config lists every key with its default.",
        formatter_class=HelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", metavar="RUN_DIR",
        help="continue the run saved in RUN_DIR, with its saved config (default: a new run)",
    )
    parser.add_argument(
        "--stop-after-epoch", type=positive_int, metavar="K",
        help="stop after epoch K, to resume later (default: run all train.epochs)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.list_config:
        print_config_keys()
        return
    if args.resume and (args.config or args.overrides):
        parser.error("--resume uses the run's saved config; drop --config and --set")
    try:
        config = load_config() if args.resume else config_from_args(args)
        run_dir = train(config, resume=args.resume, stop_after_epoch=args.stop_after_epoch)
    except ConfigError as error:
        usage_error(parser, error)
    except (AnnotationError, CheckpointError, TrainingError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit(130)
    print(run_dir)


if __name__ == "__main__":
    main()
