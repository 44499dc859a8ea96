"""Every attention variant trained on the same shapes data, with the same budget and seed; prints a
Markdown table.

Generates one shapes dataset (--train / --val / --test scenes, seed 1 for training and validation;
the test scenes come from another seed, 7), then trains `configs/shapes.yaml` with each
`model.attention` for --epochs epochs, picks each run's best epoch by the recipe's validation
metric (exact accuracy + strict pointing), and evaluates it on the test scenes with greedy decoding.
Columns: exact caption accuracy (all, and by 1 / 2 / 3 objects), strict pointing with its chance
level, BLEU-4, CIDEr, seconds per training epoch, and parameters of the decoder's attention and of
the whole model. The budget is far below the recipe's (14 epochs on 8000 scenes), so the figures
compare the variants with each other, not with the bundled model.

    python benchmarks/attention_variants.py [--epochs 8] [--train 2000] [--variants additive,dot,...]
                                            [--out runs/attention_variants] [--markdown table.md]
                                            [--set train.alpha_c=0 ...]

The training scenes carry the anchor-first captions (`--train-phrasings anchor-first`), the recipe's
when the README's table of variants was made (the recipe now trains on the ordered ones); --set
overrides the recipe for every variant alike.

With --runs it trains nothing: it evaluates finished run folders (each variant read from the run's
config), such as the README recipe's runs of the variants bundled for the page, on the same test scenes:

    python benchmarks/attention_variants.py --runs runs/shapes runs/hard runs/dot --test 1000
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from captioner.checkpoint import load_model
from captioner.cli import DEFAULT_CONFIG
from captioner.config import load_config
from captioner.data.readers import read_split
from captioner.data.shapes import generate
from captioner.evaluation import evaluate_model
from captioner.model.attention import ATTENTIONS
from captioner.training import read_metrics, train

COLUMNS = ("variant", "exact (1 / 2 / 3 objects)", "strict pointing (chance)", "BLEU-4", "CIDEr",
           "s / epoch (with validation)", "attention params", "all params")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(ATTENTIONS), help="comma-separated model.attention names")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs of every variant")
    parser.add_argument("--train", type=int, default=2000, help="training scenes")
    parser.add_argument("--val", type=int, default=200, help="validation scenes (pick the best epoch)")
    parser.add_argument("--test", type=int, default=500, help="test scenes (the table's figures)")
    parser.add_argument("--seed", type=int, default=0, help="training seed, the same for every variant")
    parser.add_argument("--out", type=Path, default=Path("runs/attention_variants"), help="data and run folders")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a key of configs/shapes.yaml for every variant (repeatable)")
    parser.add_argument("--runs", type=Path, nargs="+",
                        help="evaluate these finished run folders instead of training (default: train every variant)")
    return parser


def run_variant(name: str, args, data: Path, test_data: Path) -> dict:
    run_dir = args.out / name
    config = load_config(DEFAULT_CONFIG, [
        f"model.attention={name}", f"train.epochs={args.epochs}", f"train.seed={args.seed}",
        f"data.root={data}", f"train.out_dir={run_dir}", "train.val_images=0", *args.overrides,
    ])
    began = time.perf_counter()
    train(config)
    return evaluate_run(run_dir, test_data) | {"minutes": (time.perf_counter() - began) / 60}


def evaluate_run(run_dir: Path, test_data: Path) -> dict:
    """The table's figures for a finished run folder: its best checkpoint on the test scenes."""
    seconds_per_epoch = [row["seconds"] for row in read_metrics(run_dir)]
    model, vocab, best_config, _ = load_model(run_dir / "checkpoint_best.pt")
    name = best_config.model.attention
    best_config.data.root = str(test_data)
    metrics, _ = evaluate_model(model, vocab, read_split(best_config.data, "test"), best_config, meteor=False)
    return {
        "variant": name,
        "run": run_dir.name,
        "metrics": metrics,
        "seconds_per_epoch": sum(seconds_per_epoch) / len(seconds_per_epoch) if seconds_per_epoch else None,
        "attention_params": sum(p.numel() for p in model.decoder.attention.parameters()),
        "params": sum(p.numel() for p in model.parameters()),
    }


def table_row(result: dict) -> list[str]:
    m = result["metrics"]
    exact = (f"{m['exact_accuracy']:.1f} ({m['exact_accuracy_1obj']:.0f} / {m['exact_accuracy_2obj']:.1f} / "
             f"{m['exact_accuracy_3obj']:.1f})")
    per_epoch = "—" if result["seconds_per_epoch"] is None else f"{result['seconds_per_epoch']:.0f}"
    variant = f"`{result['variant']}`" + (f" ({result['run']})" if "minutes" not in result else "")
    return [variant, exact, f"{m['pointing_accuracy']:.1f} ({m['pointing_chance']:.1f})",
            f"{m['BLEU-4']:.1f}", f"{m['CIDEr']:.1f}", per_epoch, f"{result['attention_params']:,}",
            f"{result['params']:,}"]


def markdown(results: list[dict], args) -> str:
    budget = (f"{args.epochs} epochs on {args.train} scenes, seed {args.seed}, best epoch by validation on {args.val} "
              "scenes" if not args.runs else "finished runs (" + ", ".join(map(str, args.runs)) + "), best checkpoint each")
    lines = [f"{budget}; test on {args.test} fresh scenes, greedy; {torch.get_num_threads()} CPU threads.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(result)) + " |" for result in results]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in ATTENTIONS]
    if unknown:
        sys.exit(f"error: unknown --variants {', '.join(unknown)}; known: {', '.join(ATTENTIONS)}")
    data, test_data = args.out / "data", args.out / f"test_data_{args.test}"
    if not args.runs and not (data / "captions_val.json").exists():
        generate(data, {"train": args.train, "val": args.val}, seed=1, train_phrasings="anchor-first")
    if not (test_data / "captions_test.json").exists():
        generate(test_data, {"test": args.test}, seed=7)
    results = []
    for item in args.runs or names:
        results.append(evaluate_run(item, test_data) if args.runs else run_variant(item, args, data, test_data))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "metrics"} | {
            key: results[-1]["metrics"].get(key) for key in ("exact_accuracy", "pointing_accuracy", "BLEU-4")}),
            file=sys.stderr, flush=True)
    table = markdown(results, args)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
