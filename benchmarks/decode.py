"""Decoding speed at the paper's dimensions; prints one JSON object.

Xu et al. 2015 sizes: embedding, attention and LSTM 512, a 14 x 14 grid of 2048 features (ResNet),
a vocabulary of 10 000 words, random weights. The decoder's <end> logit is pushed to -1e4 (here
only, not in the package) so that every image runs exactly max_length + 1 = 21 steps and the
figures do not depend on when random weights happen to stop.

Reported, as medians of --repeats runs after one warm-up, in milliseconds per image:
  decoder:    the batched search (`beam_search`, and `greedy`) at batch 1 and 32, beam 1, 3, 5;
              beam 5 at batch 1 with and without the projected memory that single images get
              (decoder.py), run in turn 3 x --repeats times; and `..._products_alone`, the matrix
              products with the decoder's weights that a beam 5 search makes, timed alone: a floor
              for the search on this machine (see `products_alone`)
  reference:  the plain per-image beam search of benchmarks/reference_beam.py
  end_to_end: ResNet-101 at 256 px + beam 5 at batch 1, and the encoder alone

    python benchmarks/decode.py [--repeats 5] [--quick] [--threads N]
"""

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from unittest.mock import patch

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_beam import reference_beam_search  # noqa: E402
from timing import median_ms, times_ms  # noqa: E402

from captioner import decoding  # noqa: E402
from captioner.config import DecodeConfig, ModelConfig  # noqa: E402
from captioner.decoding import beam_search, greedy  # noqa: E402
from captioner.model.decoder import Decoder  # noqa: E402
from captioner.model.encoder import Encoder  # noqa: E402
from captioner.vocab import SPECIALS, Vocab  # noqa: E402

PAPER = ModelConfig(embed_dim=512, attention_dim=512, decoder_dim=512, grid_size=14)
FEATURE_DIM, POSITIONS, VOCAB_SIZE, MAX_LENGTH = 2048, 196, 10_000, 20


def build_decoder(vocab: Vocab) -> Decoder:
    torch.manual_seed(0)
    decoder = Decoder(len(vocab), FEATURE_DIM, PAPER).eval()
    with torch.no_grad():
        decoder.out.bias[vocab.end] = -1e4  # never <end>: every image runs all steps
    return decoder


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{names[0]} x {len(names)}" if names else platform.machine()


def check_full_length(results) -> None:
    for hypotheses in results:
        for h in hypotheses:
            assert len(h.tokens) == MAX_LENGTH and not h.finished, "a hypothesis stopped early"


def bench_decoder(decoder, vocab, batch_sizes, beams, repeats) -> dict:
    out = {}
    for B in batch_sizes:
        features = torch.randn(B, POSITIONS, FEATURE_DIM)
        for K in beams:
            config = DecodeConfig(beam_size=K, max_length=MAX_LENGTH)
            check_full_length(beam_search(decoder, features, vocab, config))
            ms = median_ms(lambda: beam_search(decoder, features, vocab, config), repeats)
            out[f"beam{K}_batch{B}"] = round(ms / B, 2)
            if K == max(beams):
                out[f"beam{K}_batch{B}_products_alone"] = round(products_alone(decoder, B, K, repeats), 2)
            if B == 1 and K == max(beams):
                out.update(projection_ab(decoder, features, vocab, config, 3 * repeats))
        config = DecodeConfig(max_length=MAX_LENGTH)
        out[f"greedy_batch{B}"] = round(median_ms(lambda: greedy(decoder, features, vocab, config), repeats) / B, 2)
    return out


def projection_ab(decoder, features, vocab, config, rounds: int) -> dict:
    """What the projected memory of a single image saves: the search with and without it, one run
    of each in turn, so that both see the same load on the machine; medians."""
    times = {True: [], False: []}
    for _ in range(rounds):
        for projected in times:
            with patch.object(decoding, "PROJECT_MAX_IMAGES", 1 if projected else 0):
                times[projected] += times_ms(lambda: beam_search(decoder, features, vocab, config), 1)
    K = config.beam_size
    return {f"beam{K}_batch1_ab_projected": round(statistics.median(times[True]), 2),
            f"beam{K}_batch1_ab_unprojected": round(statistics.median(times[False]), 2)}


def products_alone(decoder, B: int, K: int, repeats: int) -> float:
    """Milliseconds per image for what a beam search of B images x K beams cannot do without: the
    decoder's `init_state` (attention keys, and the projected memory where the search makes one)
    and, for each of the MAX_LENGTH + 1 steps, the products of the step's rows (B, then B*K) with the
    weights of the attention query, the gate beta, the LSTM's hidden and context shares and the deep
    output (the embedding's share is a table row). Random inputs; no attention, no search."""
    features = torch.randn(B, POSITIONS, FEATURE_DIM)
    projected = decoding.project_memory(B)
    attention, H, E = decoder.attention, decoder.init_h.out_features, decoder.embedding.embedding_dim
    inputs = [(torch.randn(rows, H), torch.randn(rows, FEATURE_DIM), torch.randn(rows, E))
              for rows in [B] + [B * K] * MAX_LENGTH]

    def products():
        decoder.init_state(features, project=projected)
        for h, z, x in inputs:
            attention.hidden_proj(h), decoder.beta(h), decoder.hidden_gates(h), decoder.out_h(h)
            if not projected:
                decoder.context_gates(z), decoder.out_z(z)
            decoder.out(x)

    return median_ms(products, repeats) / B


def bench_reference(decoder, vocab, beams, images, repeats) -> dict:
    features = torch.randn(images, POSITIONS, FEATURE_DIM)
    out = {}
    for K in beams:
        config = DecodeConfig(beam_size=K, max_length=MAX_LENGTH)
        check_full_length(reference_beam_search(decoder, features, vocab, config))
        ms = median_ms(lambda: reference_beam_search(decoder, features, vocab, config), repeats)
        out[f"beam{K}"] = round(ms / images, 2)
    return out


def bench_end_to_end(decoder, vocab, repeats) -> dict:
    config = ModelConfig(backbone="resnet101", weights="none", fine_tune_from="none", grid_size=14)
    encoder = Encoder(config).eval()
    images = torch.randn(1, 3, 256, 256)
    decode = DecodeConfig(beam_size=5, max_length=MAX_LENGTH)
    assert encoder(images).shape == (1, POSITIONS, FEATURE_DIM)

    def caption(images):
        return beam_search(decoder, encoder(images), vocab, decode)

    return {
        "encoder": round(median_ms(lambda: encoder(images), repeats), 2),
        "encoder_plus_beam5": round(median_ms(lambda: caption(images), repeats), 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (the median is reported)")
    parser.add_argument("--quick", action="store_true", help="batch 4 instead of 32, one timed run: a smoke test")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    batch_sizes = [1, 4] if args.quick else [1, 32]
    vocab = Vocab([*SPECIALS, *(f"w{i}" for i in range(VOCAB_SIZE - len(SPECIALS)))])
    decoder = build_decoder(vocab)
    load_before = os.getloadavg()
    with torch.inference_mode():
        report = {
            "setup": {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "cpu": cpu_name(),
                "repeats": repeats,
                "steps_per_image": MAX_LENGTH + 1,
                "positions": POSITIONS,
                "feature_dim": FEATURE_DIM,
                "vocab": VOCAB_SIZE,
            },
            "ms_per_image": {
                "decoder": bench_decoder(decoder, vocab, batch_sizes, [1, 3, 5], repeats),
                "reference": bench_reference(decoder, vocab, [1, 3, 5], 1 if args.quick else 2, repeats),
                "end_to_end": bench_end_to_end(decoder, vocab, repeats),
            },
        }
    report["setup"]["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
