"""Where a real training step of the recipe spends its time, by operator; prints one JSON object.

This runs the training loop's own step (`Stepper`, on the model as `training.trained_form` builds
it: in the config's length chunks, with the speed tricks of `training.TRAINING_TRICKS`) on --steps
real batches under torch.profiler and prints the operators with the most self CPU time, in
milliseconds per step. Then:
- step_ms: the wall-clock milliseconds of whole steps (median and fastest of about --repeats each)
  of that step and of the same step without each trick (a fresh model from the same seed each),
  alternated step by step over the same batches;
- elementwise_ms, at one chunk's size (the recipe's images x captions per image over its length
  chunks, x 256 cells x 128): the tanh that the paper's energies apply to their (rows, P, A)
  argument, and the sigmoid and exp of the same size;
- energies_ms: forward and backward of one decoder step's energies at that size, in the paper's
  tanh form (`AdditiveAttention.energies`) and in the sigmoid form that training runs
  (`captioner.sigmoid_energies`), alternated --repeats times each after one warm-up of each.

Usage: python benchmarks/train_profile.py [--config configs/shapes.yaml] [--set KEY=VALUE ...] [--steps 10] [--top 12]
       [--repeats 30]
"""

import argparse
import json
import statistics
import sys
from itertools import islice
from pathlib import Path

import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms, once_ms  # noqa: E402
from train_input import recipe_step, recipe_stepper  # noqa: E402

from captioner.model.attention import AdditiveAttention  # noqa: E402
from captioner.sigmoid_energies import energies_in_sigmoid_form  # noqa: E402
from captioner.training import TRAINING_TRICKS  # noqa: E402


def energies_ms(attention: AdditiveAttention, rows: int, cells: int, repeats: int) -> dict[str, float]:
    """Median milliseconds of one step's energies, forward and backward, for `rows` captions of
    their own images: the tanh form and the sigmoid form, alternated."""
    keys = torch.randn(rows, cells, attention.score.in_features, requires_grad=True)
    h = torch.randn(rows, attention.hidden_proj.in_features, requires_grad=True)
    forms = {"tanh": AdditiveAttention.energies, "sigmoid": energies_in_sigmoid_form}
    for energies in forms.values():  # warm-up
        energies(attention, keys, h).sum().backward()
    times = {name: [] for name in forms}
    for _ in range(repeats):
        for name, energies in forms.items():
            times[name].append(once_ms(lambda f=energies: f(attention, keys, h).sum().backward()))
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def step_ms(steppers: dict, batches: list, repeats: int) -> dict[str, dict[str, float]]:
    """Wall-clock milliseconds of each stepper's steps over `batches`, the steppers alternated
    batch by batch, `repeats` rounds: median and fastest."""
    times = {name: [] for name in steppers}
    for _ in range(repeats):
        for batch in batches:
            for name, stepper in steppers.items():
                times[name].append(once_ms(lambda s=stepper: s([batch])))
    return {name: {"median": round(statistics.median(t), 1), "fastest": round(min(t), 1)} for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shapes.yaml", help="the recipe (default %(default)s)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as train.py takes them")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps (default %(default)s)")
    parser.add_argument("--top", type=int, default=12, help="operators listed (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=30, help="timings of each step kind, elementwise function and energies form (default %(default)s)")
    args = parser.parse_args()

    config, vocab, model, stepper, loader, _ = recipe_step(args.config, args.set)
    batches = list(islice(iter(loader), args.steps + 2))
    for batch in batches[:2]:  # warm-up: first-touch allocations
        stepper([batch])
    with profile() as profiler:
        for batch in batches[2:]:
            stepper([batch])
    events = sorted(profiler.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    operators = {e.key: {"ms_per_step": round(e.self_cpu_time_total / 1000 / args.steps, 1),
                         "share": round(100 * e.self_cpu_time_total / total, 1)} for e in events[: args.top]}
    steppers = {"trained_form": stepper} | {f"without {trick}": recipe_stepper(config, vocab, (trick,))[1]
                                             for trick in TRAINING_TRICKS}
    steps = step_ms(steppers, batches[2:], max(1, args.repeats // args.steps))

    rows = config.train.batch_size * config.train.captions_per_image // config.train.length_chunks
    cells = config.model.grid_size**2
    argument = torch.randn(rows * cells * config.model.attention_dim)
    elementwise = {name: round(median_ms(lambda f=f: f(argument), args.repeats), 3)
                   for name, f in (("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("exp", torch.exp))}
    figures = {"threads": torch.get_num_threads(), "length_chunks": config.train.length_chunks, "steps": args.steps,
               "self_cpu_ms_per_step": round(total / 1000 / args.steps, 1), "operators": operators, "step_ms": steps,
               "elementwise_ms": elementwise, "elementwise_elements": argument.numel(),
               "energies_ms": energies_ms(model.decoder.attention, rows, cells, args.repeats), "energies_rows": rows}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
