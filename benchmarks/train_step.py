"""Training-step speed at the paper's dimensions; prints one JSON object.

Decoder: embedding, attention and LSTM 512, a 14 x 14 x 2048 feature grid (ResNet-101's), vocabulary
10 000, batch 32, captions of 22 tokens (21 predicted). Reported:
- decoder_step_ms: one training step (forward, backward, Adam) on precomputed features;
- step_gflop: its floating-point operations (forward and backward, counted by torch's FlopCounterMode)
  and step_gflops: GFLOP/s achieved, against matmul_gflops: a plain 2048^2 fp32 matrix product on
  the same machine in the same run. Both are timed the same way, --repeats runs each; step_gflops,
  matmul_gflops and step_vs_matmul use the best run of each (other load on the machine only ever
  slows a run down), step_vs_matmul_median the medians; decoder_step_ms is the step's median;
- step_with_encoder_ms: the same step with a frozen ResNet-101 run on 32 images at 256 px first
  (median of --repeats // 2 runs: each takes seconds), and
  step_with_cache_ms: with the features read from a real feature cache instead (float16 memory map,
  through the training Dataset and collate).

Usage: python benchmarks/train_step.py [--repeats 5] [--quick]
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_ms, times_ms  # noqa: E402

from captioner.config import load_config  # noqa: E402
from captioner.data.dataset import CaptionDataset, collate  # noqa: E402
from captioner.data.feature_cache import FeatureCache, build_feature_cache  # noqa: E402
from captioner.data.readers import read_split  # noqa: E402
from captioner.data.shapes import generate  # noqa: E402
from captioner.model.captioner import Captioner  # noqa: E402
from captioner.model.encoder import SmallCNN  # noqa: E402
from captioner.model.loss import caption_loss  # noqa: E402
from captioner.vocab import build_vocab  # noqa: E402


def gflops(flop: float, ms: float) -> float:
    return round(flop / (ms / 1000) / 1e9, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small dimensions, for a smoke test")
    args = parser.parse_args()
    B, L, V, dim, grid, size = (32, 22, 10_000, 512, 14, 256) if not args.quick else (4, 6, 100, 32, 4, 64)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shapes"
        generate(data, {"train": 2 * B}, seed=0, image_size=size)
        # A feature cache needs the encoder's weights on file: random ones here, speed is all that is measured.
        weights = Path(tmp) / "encoder.pt"
        backbone = SmallCNN(16) if args.quick else torchvision.models.get_model("resnet101", weights=None)
        torch.save(backbone.state_dict(), weights)
        config = load_config(None, [
            f"data.root={data}", f"data.image_size={size}", f"data.feature_cache={Path(tmp) / 'cache'}", "data.num_workers=0",
            "model.backbone=resnet101" if not args.quick else "model.backbone=small", f"model.weights={weights}",
            "model.fine_tune_from=none", f"model.grid_size={grid}", f"model.embed_dim={dim}",
            f"model.attention_dim={dim}", f"model.decoder_dim={dim}", "model.small_channels=16",
        ])
        model = Captioner(config.model, V)
        decoder, encoder = model.decoder, model.encoder.eval()
        optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-4)
        P, D = grid * grid, encoder.feature_dim
        features = torch.randn(B, P, D)
        captions = torch.randint(4, V, (B, L))
        captions[:, 0] = 1

        def decoder_step(feats):
            logits, alphas = decoder(feats, captions)
            loss = caption_loss(logits, alphas, captions[:, 1:], 0, 1.0)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
            optimizer.step()

        with FlopCounterMode(display=False) as counter:
            logits, alphas = decoder(features, captions)
            caption_loss(logits, alphas, captions[:, 1:], 0, 1.0)[0].backward()
        flops = counter.get_total_flops()

        images = torch.randn(B, 3, size, size)

        def step_with_encoder():
            with torch.no_grad():
                feats = encoder(images)
            decoder_step(feats)

        records = read_split(config.data, "train")
        build_feature_cache(encoder, config, "train", records, batch_size=B)
        vocab = build_vocab(c for r in records for c in r.captions)
        dataset = CaptionDataset(records, FeatureCache(config, "train", records), vocab, L)
        batches = [list(range(i, i + B)) for i in (0, B)]

        def step_with_cache():
            inputs = collate([dataset[i] for i in batches[0]], vocab.pad)[0]  # (B, P, D) float16, memory-mapped
            inputs = inputs.to(torch.float32)  # as the training loop does
            batches.reverse()
            decoder_step(inputs)

        n = 2048 if not args.quick else 256
        a, b = torch.randn(n, n), torch.randn(n, n)
        step_times = times_ms(lambda: decoder_step(features), args.repeats)
        matmul_times = times_ms(lambda: a @ b, args.repeats)
        step_ms, step_best = statistics.median(step_times), min(step_times)
        matmul_ms, matmul_best = statistics.median(matmul_times), min(matmul_times)
        result = {
            "batch": B, "caption_tokens": L, "vocab": V, "dims": dim, "grid": f"{grid}x{grid}x{D}",
            "threads": torch.get_num_threads(),
            "decoder_step_ms": round(step_ms, 1),
            "decoder_step_best_ms": round(step_best, 1),
            "step_gflop": round(flops / 1e9, 2),
            "step_gflops": gflops(flops, step_best),
            "matmul_gflops": gflops(2 * n**3, matmul_best),
            "step_vs_matmul": round(matmul_best / step_best * flops / (2 * n**3), 3),
            "step_vs_matmul_median": round(matmul_ms / step_ms * flops / (2 * n**3), 3),
            "step_with_encoder_ms": round(median_ms(step_with_encoder, max(1, args.repeats // 2)), 1),
            "step_with_cache_ms": round(median_ms(step_with_cache, args.repeats), 1),
        }
    result["cache_vs_decoder_only"] = round(result["step_with_cache_ms"] / result["decoder_step_ms"], 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
