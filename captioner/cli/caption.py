"""`caption` / `python infer.py`: caption image files, folders and globs from the shell.

Plain output is `path<TAB>caption` per image; with --n-best n > 1 it is n lines per image,
`path<TAB>rank<TAB>score<TAB>caption`, rank 1 the best and score the caption's total
log-probability (a --length-penalty ranks by the penalized score). --json prints one JSON object per
image; its "n_best" list holds {"rank", "caption", "score"}, and "novelty" and "outside_training" say
how far the image lies from the training images (captioner/novelty.py; null when the checkpoint has
no feature statistics); plain output warns on stderr about an image outside them. A file that cannot be read gets one
error line on stderr (and a JSON object with "error"), the others are captioned, and the exit status
is 1 when any failed. A bad option value exits with status 2 and the usage line, as argparse does.
"""

import argparse
import glob
import json
import sys
from pathlib import Path

from captioner import novelty
from captioner.assets import BUNDLED_CHECKPOINT
from captioner.cli import HelpFormatter, load_model_or_exit, positive_int, usage_error
from captioner.config import ConfigError
from captioner.data.images import ImageError, load_image
from captioner.decoding import LENGTH_PENALTIES, check_decode_config
from captioner.inference import Failed, caption_files
from captioner.visualize import save_attention

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Options that set decode.<key>; a ConfigError about decode.<key> names the option instead.
DECODE_OPTIONS = ("beam_size", "length_penalty", "max_length", "n_best", "sample", "temperature", "top_k", "top_p")
FLAGS = {f"decode.{key}": "--" + key.replace("_", "-") for key in DECODE_OPTIONS}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Caption images with a Show, Attend and Tell model.", formatter_class=HelpFormatter
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (searched recursively) or globs")
    parser.add_argument(
        "--checkpoint", default=str(BUNDLED_CHECKPOINT), help="checkpoint file; the default is the bundled shapes model"
    )
    parser.add_argument(
        "--beam-size", type=int, help="beams per image, 1 = greedy (default: the checkpoint's decode.beam_size)"
    )
    parser.add_argument(
        "--length-penalty", choices=LENGTH_PENALTIES,
        help="how finished beams are ranked: none (log-probability), average (per word), gnmt (Wu et al. 2016) "
        "(default: the checkpoint's decode.length_penalty)",
    )
    parser.add_argument(
        "--max-length", type=int, help="words generated at most (default: the checkpoint's decode.max_length)"
    )
    parser.add_argument(
        "--n-best", type=int, default=1, help="captions per image, best first; at most --beam-size unless --sample"
    )
    parser.add_argument("--sample", action="store_true", help="sample words from the model instead of searching")
    parser.add_argument(
        "--temperature", type=float, default=1.0, help="sampling: divides the logits (< 1 sharper, > 1 flatter)"
    )
    parser.add_argument("--top-k", type=int, default=0, help="sampling: keep the k most likely words (0 = all)")
    parser.add_argument(
        "--top-p", type=float, default=1.0, help="sampling: keep the most likely words whose probability reaches p"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per forward pass")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per image instead of tab-separated lines"
    )
    parser.add_argument(
        "--with-attention", action="store_true", help="--json: include each word's G x G attention map"
    )
    parser.add_argument(
        "--attention-dir", type=Path, help="write a PNG grid and a GIF of the per-word overlays here (default: none)"
    )
    return parser


def expand_paths(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Image files from files, folders and globs, in the given order; and error lines for patterns
    that match nothing."""
    paths, errors = [], []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not found:
            errors.append(f"cannot read image '{pattern}': no such file, or no image in that folder or glob")
        paths += found
    return paths, errors


def _decode_config(config, args):
    """The checkpoint's decode config with the options given; ConfigError for a bad combination."""
    decode = config.decode
    for key in DECODE_OPTIONS:
        if getattr(args, key) is not None:
            setattr(decode, key, getattr(args, key))
    check_decode_config(decode)
    return decode


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem, 1
    while stem in used:
        n += 1
        stem = f"{path.stem}_{n}"
    used.add(stem)
    return stem


def main(argv: list[str] | None = None) -> None:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    model, vocab, config, state = load_model_or_exit(parser, args)
    try:
        decode = _decode_config(config, args)
    except ConfigError as error:
        usage_error(parser, error, FLAGS)
    feature_stats = novelty.check(state.get("feature_stats"))
    paths, errors = expand_paths(args.paths)
    for message in errors:
        _report_error(message, args.json)
    failures, stems = len(errors), set()
    results = caption_files(
        model, vocab, paths, config.data.image_size, decode, batch_size=args.batch_size,
        progress=len(paths) > 8, seed=args.seed, feature_stats=feature_stats,
    )
    for result in results:
        if isinstance(result, Failed):
            failures += 1
            _report_error(result.error, args.json, image=str(result.path))
            continue
        best = result.hypotheses[0]
        words = vocab.decode(best.tokens)
        outside = None if result.novelty is None else result.novelty > feature_stats["threshold"]
        if outside and not args.json:
            print(f"note: {result.path} looks unlike the images the model was trained on (novelty "
                  f"{result.novelty:.1f} > {feature_stats['threshold']:.1f}): its caption is likely wrong",
                  file=sys.stderr, flush=True)
        if args.json:
            row = {"image": str(result.path), "caption": " ".join(words), "score": best.score, "words": words,
                   "novelty": result.novelty, "outside_training": outside}
            if args.with_attention:
                G = model.grid_size
                row["attention"] = [alpha.reshape(G, G).tolist() for alpha in best.alphas]
            if decode.n_best > 1:
                row["n_best"] = [
                    {"rank": rank, "caption": " ".join(vocab.decode(h.tokens)), "score": h.score}
                    for rank, h in enumerate(result.hypotheses, start=1)
                ]
            print(json.dumps(row), flush=True)
        elif decode.n_best > 1:
            for rank, h in enumerate(result.hypotheses, start=1):
                print(f"{result.path}\t{rank}\t{h.score:.4f}\t{' '.join(vocab.decode(h.tokens))}", flush=True)
        else:
            print(f"{result.path}\t{' '.join(words)}", flush=True)
        if args.attention_dir:
            try:
                image = load_image(result.path)
            except ImageError as error:  # the file changed since it was captioned
                failures += 1
                _report_error(str(error), args.json, image=str(result.path))
                continue
            save_attention(image, words, best.alphas, args.attention_dir, _unique_stem(result.path, stems))
    sys.exit(1 if failures else 0)


def _report_error(message: str, as_json: bool, image: str | None = None) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps({"image": image, "error": message}), flush=True)


if __name__ == "__main__":
    main()
