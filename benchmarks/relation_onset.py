"""When each training run starts to learn spatial relations: a diagnostic of seed-to-seed spread.

The shapes recipe learns the objects in a few epochs and the relations later, after a plateau at
chance (about 20-30 % of the relations right, given the right objects). How long that plateau lasts
decides the final exact accuracy, and it differs from seed to seed. For each finished or running
run folder this prints, from its `metrics.jsonl` and `config.yaml`, the validation relations-right,
exact accuracy, objects-right, strict pointing and seconds of every epoch, the minutes its epochs
took (and the wall minutes from its `config.yaml` to its `checkpoint_last.pt`, which add the run's
set-up: reading the data, and preloading the images where `data.preload` asks for it; a resumed run
rewrites its `config.yaml`, so these count from the last resume), and the
onset: the first epoch (and optimizer step) at which relations right passes --threshold.

    python benchmarks/relation_onset.py --runs runs/b32k2_s0 runs/b32k2_s1 [--threshold 40]
"""

import argparse
from pathlib import Path

from captioner.config import load_config
from captioner.data.readers import read_split
from captioner.training import read_metrics


def steps_per_epoch(run_dir: Path) -> int:
    """Optimizer steps of one epoch of the run, from its config and its training split's size (the
    training loop drops the last, partial batch)."""
    config = load_config(run_dir / "config.yaml", [])
    return len(read_split(config.data, "train")) // config.train.batch_size


def onset(rows: list[dict], threshold: float) -> int | None:
    """The first epoch whose validation relations-right reaches `threshold` percent, None if none."""
    return next((row["epoch"] for row in rows if row["val"]["relations_right"] >= threshold), None)


def report(run_dir: Path, threshold: float) -> str:
    rows = read_metrics(run_dir)
    steps = steps_per_epoch(run_dir)
    first = onset(rows, threshold)
    when = "not reached" if first is None else f"epoch {first} (step {first * steps})"
    minutes = sum(row["seconds"] for row in rows) / 60
    last = run_dir / "checkpoint_last.pt"
    walled = ""
    if last.exists():
        wall = (last.stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime) / 60
        walled = f" ({wall:.1f} from config.yaml to checkpoint_last.pt)"
    lines = [f"{run_dir}: {steps} steps an epoch, {len(rows)} epochs in {minutes:.1f} minutes{walled}; "
             f"relations right >= {threshold:g} % from {when}",
             "epoch | relations right | exact (1 / 2 / 3 objects) | objects right | strict pointing | seconds",
             "---|---|---|---|---|---"]
    for row in rows:
        val = row["val"]
        lines.append(f"{row['epoch']} | {val['relations_right']:.1f} | {val['exact_accuracy']:.1f} "
                     f"({val['exact_accuracy_1obj']:.0f} / {val['exact_accuracy_2obj']:.1f} / "
                     f"{val['exact_accuracy_3obj']:.1f}) | {val['objects_right']:.1f} | {val['pointing_accuracy']:.1f} | "
                     f"{row['seconds']:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders (metrics.jsonl, config.yaml)")
    parser.add_argument("--threshold", type=float, default=40.0, help="relations right, percent, that marks the onset")
    args = parser.parse_args(argv)
    print("\n\n".join(report(run_dir, args.threshold) for run_dir in args.runs))


if __name__ == "__main__":
    main()
