"""Where a real training step of the recipe spends its time, by operator; prints one JSON object.

The shapes recipe is over its 30 minutes on a slow day even with its length chunks, which cut the
decoder's padded steps from 38 % to 16 % (`benchmarks/train_input.py`). This runs the training
loop's own step (`Stepper`, in the config's length chunks) on --steps real batches under
torch.profiler and prints the operators with the most self CPU time, in milliseconds per step.
It then times, on a tensor the size of one chunk's attention energies (16 images x 2 captions x
256 cells x 128), the elementwise functions the additive attention could be written with: the
tanh it uses, and the sigmoid of the same size that tanh(x) = 2 sigmoid(2x) - 1 would need.

Usage: python benchmarks/train_profile.py [--config configs/shapes.yaml] [--set KEY=VALUE ...] [--steps 10] [--top 12]
"""

import argparse
import json
import sys
from itertools import islice
from pathlib import Path

import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402
from train_input import recipe_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shapes.yaml", help="the recipe (default %(default)s)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as train.py takes them")
    parser.add_argument("--steps", type=int, default=10, help="profiled steps (default %(default)s)")
    parser.add_argument("--top", type=int, default=12, help="operators listed (default %(default)s)")
    args = parser.parse_args()

    config, _, _, stepper, loader, _ = recipe_step(args.config, args.set)
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

    energies = torch.randn(16 * 2 * config.model.grid_size**2 * config.model.attention_dim)
    elementwise = {name: round(median_ms(lambda f=f: f(energies), 30), 3)
                   for name, f in (("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("exp", torch.exp))}
    figures = {"threads": torch.get_num_threads(), "length_chunks": config.train.length_chunks, "steps": args.steps,
               "self_cpu_ms_per_step": round(total / 1000 / args.steps, 1), "operators": operators,
               "elementwise_ms": elementwise, "elementwise_elements": energies.numel()}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
