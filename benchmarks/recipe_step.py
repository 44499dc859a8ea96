"""Where a training step of the shapes recipe spends its time; prints one JSON object.

The README's recipe (configs/shapes.yaml) has to train within 30 minutes on a 2-core CPU, and its
validation accuracy is still rising when the run ends: this splits one step (64 images of 128 px,
each with `train.captions_per_image` captions of the shapes world's length) into the encoder's
forward and backward, the decoder's forward and backward on the encoder's output, and Adam, so that
a faster recipe starts from the part that costs the most. Medians of --repeats runs, in milliseconds.

Usage: python benchmarks/recipe_step.py [--config configs/shapes.yaml] [--set KEY=VALUE ...] [--repeats 10]
                                        [--length 16]
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms  # noqa: E402

from captioner.config import load_config  # noqa: E402
from captioner.model.captioner import Captioner  # noqa: E402
from captioner.model.loss import loss_terms  # noqa: E402
from captioner.training import build_optimizer  # noqa: E402

VOCAB = 40  # about the shapes world's vocabulary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/shapes.yaml", help="the recipe (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each part (default %(default)s)")
    parser.add_argument("--length", type=int, default=16, help="caption tokens incl. <start> and <end> (default %(default)s)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, as train.py takes them (model.grid_size=8, ...)")
    args = parser.parse_args()

    config = load_config(args.config, args.set)
    torch.manual_seed(0)
    model = Captioner(config.model, VOCAB).train()
    optimizer = build_optimizer(model, config.train)
    batch, size, K = config.train.batch_size, config.data.image_size, config.train.captions_per_image
    images = torch.randn(batch, 3, size, size)
    captions = torch.randint(4, VOCAB, (batch * K, args.length))  # K captions per image, as training draws them

    def encoder_forward():
        with torch.no_grad():
            model.encoder(images)

    def encoder_forward_backward():
        model.encoder(images).sum().backward()

    features = model.encoder(images).detach().requires_grad_(True)

    def decoder_forward():
        with torch.no_grad():
            model.decoder(features, captions)

    def decoder_forward_backward():
        logits, alphas = model.decoder(features, captions)
        nll, penalty, _ = loss_terms(logits, alphas, captions[:, 1:], 0)
        (nll + config.train.alpha_c * penalty).backward()

    def whole_step():
        optimizer.zero_grad(set_to_none=True)
        logits, alphas = model(images, captions)
        nll, penalty, _ = loss_terms(logits, alphas, captions[:, 1:], 0)
        (nll + config.train.alpha_c * penalty).backward()
        optimizer.step()

    def adam():
        optimizer.step()

    whole_step()  # every parameter has a gradient for adam() to use
    figures = {
        "threads": torch.get_num_threads(),
        "batch": batch,
        "captions_per_image": K,
        "image_size": size,
        "caption_tokens": args.length,
        "overrides": args.set,
        "whole_step_ms": median_ms(whole_step, args.repeats),
        "encoder_forward_ms": median_ms(encoder_forward, args.repeats),
        "encoder_forward_backward_ms": median_ms(encoder_forward_backward, args.repeats),
        "decoder_forward_ms": median_ms(decoder_forward, args.repeats),
        "decoder_forward_backward_ms": median_ms(decoder_forward_backward, args.repeats),
        "adam_ms": median_ms(adam, args.repeats),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}, indent=1))


if __name__ == "__main__":
    main()
