"""Can the decoder learn spatial relations at all, given ideal annotation vectors? Prints JSON.

The image encoder is taken out of the question: every scene of the shapes world is turned straight
into a G x G grid of annotation vectors that say exactly what is at each cell (one-hot colour and
shape, size) and, as the variant says, where the cell is: not at all (plain), its x and y in
[-1, 1] appended (coordinates), or every feature times x and times y appended (product).
--feature-scale multiplies the what-features only, as a trained CNN's larger features would. The
real decoder is trained on them with the real loss (teacher forcing, one random reference per scene
per step), and every few hundred steps the script prints how often its most likely next word names
the true direction at the direction words of held-out references (chance: about 25 %). Each
setting in --variants is trained from the same seed.

    python benchmarks/relation_learnability.py --steps 1500 --variants coordinates          # 25 -> 82 %
    python benchmarks/relation_learnability.py --steps 1250 --variants coordinates --feature-scale 5   # stays ~24 %
"""

import argparse
import json
import time

import numpy as np
import torch

from captioner.config import ModelConfig
from captioner.data.shapes import COLOURS, SHAPES, describe, make_scene
from captioner.data.shapes_grammar import DIRECTION_OF_WORD, parse_caption
from captioner.model.decoder import Decoder
from captioner.model.encoder import cell_coordinates
from captioner.model.loss import caption_loss
from captioner.vocab import build_vocab

GRID = 16
IMAGE = 128


def scene_grid(scene, position: str, scale: float = 1.0) -> torch.Tensor:
    """(P, D) annotation vectors: colour, shape and size of the object at each cell, then where the
    cell is as `position` says: "plain" (not at all), "coordinates" (its x, y), "diagonals" (x, y
    and the diagonals, `model.coordinate_axes: 4`) or "product" (every feature times x and times y)."""
    grid = torch.zeros(GRID, GRID, len(COLOURS) + len(SHAPES) + 1)
    cell = IMAGE / GRID
    for o in scene.objects:
        r0, r1 = int(o.y // cell), int((o.y + o.extent - 1) // cell)
        c0, c1 = int(o.x // cell), int((o.x + o.extent - 1) // cell)
        grid[r0 : r1 + 1, c0 : c1 + 1, list(COLOURS).index(o.colour)] = 1
        grid[r0 : r1 + 1, c0 : c1 + 1, len(COLOURS) + SHAPES.index(o.shape)] = 1
        grid[r0 : r1 + 1, c0 : c1 + 1, len(COLOURS) + len(SHAPES)] = 1.0 if o.size == "large" else -1.0
    grid = grid * scale
    axes = 4 if position == "diagonals" else 2
    where = cell_coordinates(grid.new_zeros(1, 1, GRID, GRID), axes)[0].permute(1, 2, 0)  # (G, G, axes), as the encoder's
    x, y = where[..., :1], where[..., 1:2]
    if position in ("coordinates", "diagonals"):
        grid = torch.cat([grid, where], -1)
    elif position == "product":
        grid = torch.cat([grid, grid * x, grid * y], -1)
    return grid.flatten(0, 1)


def make_data(count: int, seed: int, position: str, scale: float):
    rng = np.random.default_rng(seed)
    scenes = [make_scene(rng) for _ in range(count)]
    return torch.stack([scene_grid(s, position, scale) for s in scenes]), [describe(s) for s in scenes]


def direction_accuracy(decoder, vocab, features, references) -> float:
    right = total = 0
    decoder.eval()
    with torch.no_grad():
        for a, captions in zip(features, references):
            if len(parse_caption(captions[0].split()).claims) == 0:
                continue
            ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(vocab.encode(c)) for c in captions], batch_first=True)
            logits, _ = decoder(a.expand(len(captions), -1, -1), ids)
            for r, caption in enumerate(captions):
                for claim in parse_caption(caption.split()).claims:
                    guess = vocab.words[int(logits[r, claim.position].argmax())]
                    right += DIRECTION_OF_WORD.get(guess) == claim.direction
                    total += 1
    decoder.train()
    return round(100 * right / max(total, 1), 1)


def run(variant: str, args) -> dict:
    torch.manual_seed(0)
    features, references = make_data(args.scenes, 1, variant, args.feature_scale)
    test_features, test_references = make_data(300, 2, variant, args.feature_scale)
    vocab = build_vocab(c for captions in references for c in captions)
    config = ModelConfig(embed_dim=128, attention_dim=128, decoder_dim=args.decoder_dim, dropout=0.3)
    decoder = Decoder(len(vocab), features.shape[-1], config)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=args.lr)
    rng = np.random.default_rng(0)
    curve, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = rng.choice(len(features), size=64, replace=False)
        captions = [references[i][rng.integers(len(references[i]))] for i in batch]
        ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(vocab.encode(c)) for c in captions], batch_first=True)
        logits, alphas = decoder(features[batch], ids)
        loss, _, _ = caption_loss(logits, alphas, ids[:, 1:], vocab.pad, alpha_c=0.01)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
        optimizer.step()
        if step % args.every == 0:
            curve.append({"step": step, "loss": round(loss.item(), 3),
                          "direction_accuracy": direction_accuracy(decoder, vocab, test_features, test_references)})
            print(json.dumps({"variant": variant, **curve[-1]}), flush=True)
    return {"variant": variant, "curve": curve, "seconds": round(time.perf_counter() - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["plain", "coordinates"], choices=["plain", "coordinates", "diagonals", "product"])
    parser.add_argument("--scenes", type=int, default=8000)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--decoder-dim", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--feature-scale", type=float, default=1.0,
                        help="multiplies what each cell holds, not where it is (learned features are larger)")
    args = parser.parse_args()
    print(json.dumps([run(variant, args) for variant in args.variants]))


if __name__ == "__main__":
    main()
