"""`captioner-export`: a slim serving checkpoint (no optimizer state) with a description for the demo,
and the statistics of the training images' encoder features that flag a picture outside the model's
world (captioner/novelty.py), computed on the data of the checkpoint's config."""

import argparse
import json
import sys
from pathlib import Path

from captioner import novelty
from captioner.checkpoint import CheckpointError, export_model, load_model
from captioner.cli import HelpFormatter
from captioner.data.records import AnnotationError


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a training checkpoint for serving.", formatter_class=HelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint, e.g. checkpoint_best.pt of a run")
    parser.add_argument("--out", required=True, help="where to write the serving checkpoint")
    parser.add_argument("--name", required=True, help="the model's name, shown on the demo page")
    parser.add_argument("--trained-on", required=True, help="what the model was trained on, shown on the demo page")
    parser.add_argument(
        "--metrics",
        help="a JSON file of figures shown on the demo page, e.g. the output of captioner-eval --json (default: none)",
    )
    parser.add_argument(
        "--notes", default="", help="how it was trained (command, time), shown on the demo page (default: none)"
    )
    parser.add_argument(
        "--novelty-images", type=int, default=2000,
        help="training images whose encoder features give the statistics that flag a picture outside the "
        "model's world (0 = none)",
    )
    parser.add_argument("--data-root", help="dataset folder of those images (default: the checkpoint's data.root)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    try:
        metrics = json.loads(Path(args.metrics).read_text()) if args.metrics else {}
        meta = {"name": args.name, "trained_on": args.trained_on, "metrics": metrics, "notes": args.notes}
        extra = {}
        if args.novelty_images > 0:
            model, _, config, _ = load_model(args.checkpoint)
            if args.data_root:
                config.data.root = args.data_root
            extra["feature_stats"] = novelty.fit_on_data(model, config.data, args.novelty_images)
        export_model(args.checkpoint, args.out, meta, **extra)
    except (CheckpointError, AnnotationError, OSError, json.JSONDecodeError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
