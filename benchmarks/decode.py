"""Decoding speed at the paper's dimensions, plain model against inference engine; prints one JSON object.

Xu et al. 2015 sizes: embedding, attention and LSTM 512, a 14 x 14 grid of 2048 features (ResNet),
a vocabulary of 10 000 words, random weights. The decoder's <end> logit is pushed to -1e4 (here
only, not in the package) so that every image runs exactly max_length + 1 = 21 steps and the
figures do not depend on when random weights happen to stop.

Reported, as medians of --repeats runs after one warm-up, in milliseconds per image:
  engine:     the batched search through `InferenceEngine` (`beam_search`, and `greedy`) at batch 1
              and 32, beam 1, 3, 5; and `beam5_batch*_products_alone`, the matrix products with the
              decoder's weights that a beam 5 search makes, timed alone (see `products_alone`): a
              floor for the search on this machine, with `beam5_batch*_vs_floor` the engine's ratio
  plain:      beam 5 with the plain model (`Decoder.step`), and `beam5_batch*_engine_speedup`
  ablation:   beam 5 with the engine, and with each of its speed forms switched off in turn (one run
              of each variant per round, 2 x --repeats rounds, so that all see the same load on the
              machine), and `..._saves_percent`: how much of the search each form saves
  reference:  the plain per-image beam search of tests/reference_beam.py, through the engine
  end_to_end: ResNet-101 at 256 px + beam 5 at batch 1, and the encoder alone

    python benchmarks/decode.py [--repeats 5] [--quick] [--threads N]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))  # the reference beam search lives with the tests
from reference_beam import reference_beam_search
from timing import median_ms

from captioner.config import DecodeConfig, ModelConfig
from captioner.decoding import beam_search, greedy
from captioner.engine import TRICKS, InferenceEngine
from captioner.model.decoder import Decoder
from captioner.model.encoder import Encoder
from captioner.vocab import SPECIALS, Vocab

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


def bench_engine(engine, vocab, batch_sizes, beams, repeats) -> dict:
    out = {}
    for B in batch_sizes:
        features = torch.randn(B, POSITIONS, FEATURE_DIM)
        for K in beams:
            config = DecodeConfig(beam_size=K, max_length=MAX_LENGTH)
            check_full_length(beam_search(engine, features, vocab, config))
            run = partial(beam_search, engine, features, vocab, config)
            out[f"beam{K}_batch{B}"] = round(median_ms(run, repeats) / B, 2)
        K = max(beams)
        floor = products_alone(engine, B, K, repeats)
        out[f"beam{K}_batch{B}_products_alone"] = round(floor, 2)
        out[f"beam{K}_batch{B}_vs_floor"] = round(out[f"beam{K}_batch{B}"] / floor, 2)
        config = DecodeConfig(max_length=MAX_LENGTH)
        out[f"greedy_batch{B}"] = round(median_ms(partial(greedy, engine, features, vocab, config), repeats) / B, 2)
    return out


def bench_plain(decoder, vocab, batch_sizes, repeats, engine_figures) -> dict:
    out = {}
    config = DecodeConfig(beam_size=5, max_length=MAX_LENGTH)
    for B in batch_sizes:
        features = torch.randn(B, POSITIONS, FEATURE_DIM)
        check_full_length(beam_search(decoder, features, vocab, config))
        ms = median_ms(partial(beam_search, decoder, features, vocab, config), repeats) / B
        out[f"beam5_batch{B}"] = round(ms, 2)
        out[f"beam5_batch{B}_engine_speedup"] = round(ms / engine_figures[f"beam5_batch{B}"], 2)
    return out


def ablation(decoder, vocab, batch_sizes, rounds: int) -> dict:
    """Beam 5 with the whole engine and with each speed form off, one run of each in turn per round
    (after one warm-up run each); medians, and the share of the search each form saves."""
    variants = {"engine": InferenceEngine(decoder)} | {
        f"without_{name}": InferenceEngine(decoder, without=(name,)) for name in TRICKS
    }
    config = DecodeConfig(beam_size=5, max_length=MAX_LENGTH)
    out = {}
    for B in batch_sizes:
        features = torch.randn(B, POSITIONS, FEATURE_DIM)
        times = {name: [] for name in variants}
        for round_ in range(rounds + 1):
            for name, engine in variants.items():
                start = time.perf_counter()
                beam_search(engine, features, vocab, config)
                if round_:  # the first round warms up
                    times[name].append(1000 * (time.perf_counter() - start) / B)
        full = statistics.median(times["engine"])
        out[f"beam5_batch{B}_engine"] = round(full, 2)
        for name in TRICKS:
            ms = statistics.median(times[f"without_{name}"])
            out[f"beam5_batch{B}_without_{name}"] = round(ms, 2)
            out[f"beam5_batch{B}_{name}_saves_percent"] = round(100 * (ms - full) / ms, 1)
    return out


def products_alone(engine: InferenceEngine, B: int, K: int, repeats: int) -> float:
    """Milliseconds per image for what a beam search of B images x K beams cannot do without: the
    engine's `init_state` (attention keys, and the projected memory where the search makes one)
    and, for each of the MAX_LENGTH + 1 steps, the products of the step's rows (B, then B*K) with the
    weights of the attention query, the gate beta, the LSTM's hidden and context shares and the deep
    output (the embedding's share is a table row), each computed the engine's way. Random inputs;
    no attention, no search."""
    features = torch.randn(B, POSITIONS, FEATURE_DIM)
    projected = engine.init_state(features)[2].projected
    H, E = engine.decoder.init_h.out_features, engine.decoder.embedding.embedding_dim
    inputs = [(torch.randn(rows, H), torch.randn(rows, FEATURE_DIM), torch.randn(rows, E))
              for rows in [B] + [B * K] * MAX_LENGTH]

    def products():
        engine.init_state(features)
        for h, z, x in inputs:
            engine.hidden_proj(h), engine.beta(h), engine.hidden_gates(h), engine.out_h(h)
            if not projected:
                engine.context_gates(z), engine.out_z(z)
            engine.out(x)

    return median_ms(products, repeats) / B


def bench_reference(engine, vocab, beams, images, repeats) -> dict:
    features = torch.randn(images, POSITIONS, FEATURE_DIM)
    out = {}
    for K in beams:
        config = DecodeConfig(beam_size=K, max_length=MAX_LENGTH)
        check_full_length(reference_beam_search(engine, features, vocab, config))
        ms = median_ms(partial(reference_beam_search, engine, features, vocab, config), repeats)
        out[f"beam{K}"] = round(ms / images, 2)
    return out


def bench_end_to_end(engine, vocab, repeats) -> dict:
    config = ModelConfig(backbone="resnet101", weights="none", fine_tune_from="none", grid_size=14)
    encoder = Encoder(config).eval()
    images = torch.randn(1, 3, 256, 256)
    decode = DecodeConfig(beam_size=5, max_length=MAX_LENGTH)
    assert encoder(images).shape == (1, POSITIONS, FEATURE_DIM)

    def caption(images):
        return beam_search(engine, encoder(images), vocab, decode)

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
    engine = InferenceEngine(decoder)
    load_before = os.getloadavg()
    with torch.inference_mode():
        engine_figures = bench_engine(engine, vocab, batch_sizes, [1, 3, 5], repeats)
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
                "engine_tricks": sorted(engine.tricks),
            },
            "ms_per_image": {
                "engine": engine_figures,
                "plain": bench_plain(decoder, vocab, batch_sizes, repeats, engine_figures),
                "ablation": ablation(decoder, vocab, batch_sizes, 2 * repeats),
                "reference": bench_reference(engine, vocab, [1, 3, 5], 1 if args.quick else 2, repeats),
                "end_to_end": bench_end_to_end(engine, vocab, repeats),
            },
        }
    report["setup"]["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
