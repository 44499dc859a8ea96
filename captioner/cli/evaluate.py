"""`captioner-eval`: caption a split with a checkpoint and print the caption metrics and pointing accuracy."""

import argparse
import sys

from captioner.cli import HelpFormatter, load_model_or_exit, positive_int, usage_error, with_flags
from captioner.config import ConfigError
from captioner.data.readers import FORMATS, read_split
from captioner.data.records import SPLITS, AnnotationError
from captioner.decoding import check_decode_config
from captioner.evaluation import MetricUnavailable, evaluate_model, metrics_json, write_coco_results

# The config key each option sets; errors about the key name the option.
FLAGS = {
    "data.root": "--data", "data.format": "--format", "decode.beam_size": "--beam-size",
    "decode.max_length": "--max-length", "train.batch_size": "--batch-size",
}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Evaluate a captioner checkpoint on a dataset split.", formatter_class=HelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint file, e.g. checkpoint_best.pt of a run")
    parser.add_argument("--data", help="dataset folder (default: the checkpoint's data.root)")
    parser.add_argument(
        "--format", choices=FORMATS, help="annotation format of --data (default: the checkpoint's data.format)"
    )
    parser.add_argument(
        "--split", default="test", choices=SPLITS, help="which split of the dataset to caption and score"
    )
    parser.add_argument(
        "--beam-size", type=int, help="beams per image, 1 = greedy (default: the checkpoint's decode.beam_size)"
    )
    parser.add_argument(
        "--max-length", type=int, help="words generated at most (default: the checkpoint's decode.max_length)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images captioned per forward pass")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--spice", action="store_true", help="also compute SPICE (needs its Stanford CoreNLP models)")
    parser.add_argument(
        "--results", metavar="FILE", help="write the captions to FILE in the COCO results format (default: none)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    model, vocab, config, _ = load_model_or_exit(parser, args)
    for value, section, key in (
        (args.data, config.data, "root"), (args.format, config.data, "format"),
        (args.beam_size, config.decode, "beam_size"), (args.max_length, config.decode, "max_length"),
        (args.batch_size, config.train, "batch_size"),
    ):
        if value is not None:
            setattr(section, key, value)
    try:
        check_decode_config(config.decode)
        records = read_split(config.data, args.split)
        metrics, captions = evaluate_model(model, vocab, records, config, spice=args.spice)
    except ConfigError as error:
        usage_error(parser, error, FLAGS)
    except (AnnotationError, MetricUnavailable) as error:
        sys.exit(f"error: {with_flags(str(error), FLAGS)}")
    metrics["beam_size"] = config.decode.beam_size
    if args.results:
        write_coco_results(args.results, captions)
    if args.json:
        print(metrics_json(metrics))
    else:
        for name, value in metrics.items():
            print(f"{name:>18}  {value:.2f}" if isinstance(value, float) else f"{name:>18}  {value}")


if __name__ == "__main__":
    main()
