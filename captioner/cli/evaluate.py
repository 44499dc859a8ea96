"""`captioner-eval`: caption a split with a checkpoint and print the caption metrics and pointing accuracy."""

import argparse
import json
import sys

from captioner.checkpoint import CheckpointError, load_model
from captioner.config import ConfigError
from captioner.data.readers import read_split
from captioner.data.records import SPLITS, AnnotationError
from captioner.evaluation import MetricUnavailable, evaluate_model, write_coco_results
from captioner.training import resolve_device


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate a captioner checkpoint on a dataset split.")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file (checkpoint_best.pt of a run)")
    parser.add_argument("--data", help="dataset folder (default: the checkpoint's data.root)")
    parser.add_argument("--format", help="coco | karpathy | folder (default: the checkpoint's data.format)")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--beam-size", type=int, help="beam size (default: the checkpoint's decode.beam_size)")
    parser.add_argument("--max-length", type=int, help="words generated at most")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--spice", action="store_true", help="also compute SPICE (needs its Stanford models)")
    parser.add_argument("--results", metavar="FILE", help="write the captions in the COCO results format")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    try:
        model, vocab, config, _ = load_model(args.checkpoint, resolve_device(args.device))
        for value, section, key in (
            (args.data, config.data, "root"), (args.format, config.data, "format"),
            (args.beam_size, config.decode, "beam_size"), (args.max_length, config.decode, "max_length"),
            (args.batch_size, config.train, "batch_size"),
        ):
            if value is not None:
                setattr(section, key, value)
        records = read_split(config.data, args.split)
        metrics, captions = evaluate_model(model, vocab, records, config, spice=args.spice)
    except (CheckpointError, ConfigError, AnnotationError, MetricUnavailable) as error:
        sys.exit(f"error: {error}")
    metrics["beam_size"] = config.decode.beam_size
    if args.results:
        write_coco_results(args.results, captions)
    if args.json:
        print(json.dumps(metrics))
    else:
        for name, value in metrics.items():
            print(f"{name:>18}  {value:.2f}" if isinstance(value, float) else f"{name:>18}  {value}")


if __name__ == "__main__":
    main()
