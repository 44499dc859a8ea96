"""`captioner-train` / `python train.py`: train a captioner, or resume a run."""

import argparse
import sys

from captioner.checkpoint import CheckpointError
from captioner.cli import add_config_arguments, config_from_args
from captioner.config import ConfigError, load_config
from captioner.data.records import AnnotationError
from captioner.training import train


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a Show, Attend and Tell captioner.")
    add_config_arguments(parser)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR (its config is used)")
    parser.add_argument("--stop-after-epoch", type=int, metavar="K", help="stop after epoch K (resume later)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    try:
        if args.resume:
            if args.config or args.overrides:
                raise ConfigError("--resume uses the run's saved config; drop --config and --set")
            config = load_config()
        else:
            config = config_from_args(args)
        run_dir = train(config, resume=args.resume, stop_after_epoch=args.stop_after_epoch)
    except (ConfigError, AnnotationError, CheckpointError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit(130)
    print(run_dir)


if __name__ == "__main__":
    main()
