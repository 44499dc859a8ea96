"""What feeding the training loop costs on a small CPU; prints one JSON object.

`benchmarks/recipe_step.py` times a step on random tensors; a real epoch of the shapes recipe is
slower than its steps add up to. This runs the training loop's own step (`Stepper`: forward,
backward, clipping, Adam) on the recipe's real training data three ways, over --steps steps each:
- loader_ms: batches from the DataLoader as `train.py` builds it (`data.num_workers` worker
  processes decoding JPEGs beside the step's threads);
- memory_ms: the same batches, gathered first, so the step runs alone;
- decode_ms: decoding and preprocessing one batch's images in this process, with nothing else running.
Milliseconds per step (per batch for decode_ms), the steps run in as many length chunks as the
config's `train.length_chunks`. padded_share is the share of the decoder's caption-steps that are
padding when every caption of a batch runs for the longest one's steps; chunked_padded_share the
share that is still padding in 2, 3, 4 and 6 length chunks (`captioner.length_chunks`).

Usage: python benchmarks/train_input.py [--config configs/shapes.yaml] [--set KEY=VALUE ...] [--steps 20]
"""

import argparse
import json
import time
from itertools import islice

import torch

from captioner import distributed
from captioner.config import load_config
from captioner.data.readers import read_split
from captioner.length_chunks import LengthChunks
from captioner.model.captioner import Captioner
from captioner.training import Stepper, _train_loader, build_optimizer, trained_form
from captioner.vocab import build_vocab


def per_step_ms(stepper: Stepper, batches) -> float:
    start, steps = time.perf_counter(), 0
    for inputs, captions in batches:
        stepper([(inputs.float(), captions)])
        steps += 1
    return 1000 * (time.perf_counter() - start) / steps


def recipe_stepper(config, vocab, without: tuple[str, ...] = ()):
    """A fresh model (seed 0) and the training step `train.py` runs on it: (model, stepper). The
    model is `training.trained_form`'s, without the speed tricks named in `without` (of
    `training.TRAINING_TRICKS`)."""
    torch.manual_seed(0)
    model = Captioner(config.model, len(vocab)).train()
    optimizer = build_optimizer(model, config.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trained = trained_form(model, config.train, vocab.pad, without)
    return model, Stepper(trained, optimizer, scheduler, config, vocab.pad, None, 1)


def recipe_step(config_path: str, overrides: list[str]):
    """The recipe's training step as `train.py` runs it (`recipe_stepper`) and its training data:
    (config, vocab, model, stepper, loader, dataset)."""
    config = load_config(config_path, overrides)
    records = read_split(config.data, "train")
    vocab = build_vocab((c for r in records for c in r.captions), config.data.min_word_count)
    model, stepper = recipe_stepper(config, vocab)
    loader, dataset, _ = _train_loader(config, records, model, vocab, distributed.Process(), torch.device("cpu"))
    return config, vocab, model, stepper, loader, dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shapes.yaml", help="the recipe (default %(default)s)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as train.py takes them")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each kind (default %(default)s)")
    args = parser.parse_args()

    config, vocab, model, stepper, loader, dataset = recipe_step(args.config, args.set)

    batches = iter(loader)  # one iterator: its workers start once, in the warm-up
    per_step_ms(stepper, islice(batches, 3))  # warm-up: workers started, first-touch allocations
    loader_ms = per_step_ms(stepper, islice(batches, args.steps))
    gathered = list(islice(batches, args.steps))
    memory_ms = per_step_ms(stepper, gathered)
    targets = [captions[:, 1:] for _, captions in gathered]
    padded_share = 100 * sum((t == vocab.pad).sum().item() for t in targets) / sum(t.numel() for t in targets)
    real = sum((t != vocab.pad).sum().item() for t in targets)
    chunked_padded_share = {}
    for chunks in (2, 3, 4, 6):
        plans = [LengthChunks(model, chunks, vocab.pad).plan(captions, len(inputs)) for inputs, captions in gathered]
        run = sum(len(rows) * steps for plan in plans for _, rows, steps in plan)
        chunked_padded_share[chunks] = round(100 * (1 - real / run), 1)
    start = time.perf_counter()
    for index in range(args.steps * config.train.batch_size):
        dataset.inputs[index]
    decode_ms = 1000 * (time.perf_counter() - start) / args.steps
    figures = {"threads": torch.get_num_threads(), "num_workers": config.data.num_workers, "overrides": args.set,
               "batch": config.train.batch_size, "length_chunks": config.train.length_chunks, "padded_share": padded_share,
               "chunked_padded_share": chunked_padded_share,
               "loader_ms": loader_ms, "memory_ms": memory_ms, "decode_ms": decode_ms}
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
