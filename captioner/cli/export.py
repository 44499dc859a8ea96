"""`captioner-export`: a slim serving checkpoint (no optimizer state) with a description for the demo."""

import argparse
import json
import sys
from pathlib import Path

from captioner.checkpoint import CheckpointError, export_model
from captioner.cli import HelpFormatter


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Export a training checkpoint for serving.", formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint, e.g. checkpoint_best.pt of a run")
    parser.add_argument("--out", required=True, help="where to write the serving checkpoint")
    parser.add_argument("--name", required=True, help="the model's name, shown on the demo page")
    parser.add_argument("--trained-on", required=True, help="what the model was trained on, shown on the demo page")
    parser.add_argument(
        "--metrics", help="a JSON file of figures shown on the demo page, e.g. the output of captioner-eval --json "
        "(default: none)",
    )
    parser.add_argument("--notes", default="", help="how it was trained (command, time), shown on the demo page (default: none)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    try:
        metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
        meta = {"name": args.name, "trained_on": args.trained_on, "metrics": metrics, "notes": args.notes}
        export_model(args.checkpoint, args.out, meta)
    except (CheckpointError, OSError, json.JSONDecodeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
