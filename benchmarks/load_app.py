"""Load test of the demo page's `/caption` endpoint; prints one JSON object.

Serves the page in-process on 127.0.0.1 (or uses a running one at --url, which must be local and
serve the same --checkpoint), then starts --clients threads, each with its own gradio_client
`Client`, that send --requests captions each, cycling over a few images: the bundled examples, or
random shapes scenes when there are none. Every answer is checked against the handler called
directly on the same image (the caption, its words, the strip's captions); a wrong answer or an
error counts as a failure. Latency is per request, from submit to result, as the client sees it:
it includes the queue wait (the page runs QUEUE["default_concurrency_limit"] captions at once).

    python benchmarks/load_app.py [--checkpoint assets/shapes_model.pt] [--url http://127.0.0.1:7860/]
                                  [--clients 8] [--requests 10] [--beam-size 3]

The exit status is 1 when any request failed.
"""

import argparse
import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client, handle_file  # noqa: E402

from captioner.app import QUEUE, create_demo, example_images, launch  # noqa: E402
from captioner.cli.caption import BUNDLED_CHECKPOINT  # noqa: E402
from captioner.demo_handlers import CaptionDemo, random_scene  # noqa: E402

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TIMEOUT_S = 120  # per request, and for all clients to connect: the run always ends


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Concurrent gradio_client load on the demo's /caption endpoint.")
    parser.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT),
                        help="checkpoint served (and used to check answers)")
    parser.add_argument("--url", help="a running page on this machine (default: serve one in-process)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, one thread and Client each")
    parser.add_argument("--requests", type=int, default=10, help="requests per client")
    parser.add_argument("--images", type=int, default=4, help="random scenes to use when there are no example images")
    parser.add_argument("--beam-size", type=int, default=3, help="beam size of every request")
    parser.add_argument("--max-length", type=int,
                        help="max caption length of every request (default: the checkpoint's)")
    return parser


def load_images(folder: Path, count: int) -> list[Path]:
    """The bundled examples, or `count` random shapes scenes written into `folder`."""
    examples = [Path(p) for p in example_images()]
    if examples:
        return examples
    paths = []
    for seed in range(count):
        path = folder / f"scene_{seed}.png"
        random_scene(np.random.default_rng(seed)).save(path)
        paths.append(path)
    return paths


def run_client(url: str, jobs: list[tuple[Path, str]], options: tuple, start: threading.Barrier, results: list) -> None:
    """Send `jobs` (image, expected caption) one after another; append (ok, latency_s, error) each."""
    try:
        client = Client(url, verbose=False, download_files=False)
    except Exception as error:  # the page is not there: every request of this client fails
        client, message = None, f"cannot connect: {type(error).__name__}: {error}"
    start.wait(TIMEOUT_S)
    if client is None:
        results.extend((False, 0.0, message) for _ in jobs)
        return
    for path, expected in jobs:
        began = time.perf_counter()
        try:
            job = client.submit(handle_file(str(path)), *options, api_name="/caption")
            text, words, gallery, _, files = job.result(timeout=TIMEOUT_S)
            latency = time.perf_counter() - began
            tokens = [w["token"] for w in words]
            ok = text == expected and tokens == text.split() == [g["caption"] for g in gallery] and len(files) == 2
            results.append((ok, latency, None if ok else f"{path.name}: got {text!r}, expected {expected!r}"))
        except Exception as error:  # an AppError, a timeout, a dropped connection: all are failures
            results.append((False, time.perf_counter() - began, f"{path.name}: {type(error).__name__}: {error}"))


def free_port() -> int:
    with socket.socket() as s:  # launch(server_port=0) fails gradio's own health check
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.url and urlparse(args.url).hostname not in LOCAL_HOSTS:
        sys.exit(f"error: --url must be on this machine ({', '.join(sorted(LOCAL_HOSTS))}), got {args.url}")
    demo = CaptionDemo.from_checkpoint(args.checkpoint)
    options = (args.beam_size, "none", args.max_length or demo.config.decode.max_length)
    with tempfile.TemporaryDirectory(prefix="captioner-load-") as tmp:
        os.environ["GRADIO_TEMP_DIR"] = str(Path(tmp) / "gradio")  # read when the components are built
        images = load_images(Path(tmp), args.images)
        expected = {path: demo.caption(str(path), *options)[0] for path in images}  # read as the server reads it
        page = None
        url = args.url
        if url is None:
            page = create_demo(demo=demo)
            launch(page, port=free_port(), prevent_thread_lock=True, quiet=True)
            url = page.local_url
        results: list = []
        start = threading.Barrier(args.clients + 1)
        threads = []
        for c in range(args.clients):
            paths = [images[(c + r) % len(images)] for r in range(args.requests)]
            jobs = [(path, expected[path]) for path in paths]
            threads.append(threading.Thread(target=run_client, args=(url, jobs, options, start, results), daemon=True))
            threads[-1].start()
        start.wait(TIMEOUT_S)
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        if page is not None:
            with contextlib.redirect_stdout(sys.stderr):  # gradio prints "Closing server..."; stdout is the JSON
                page.close()
    latencies = np.array([latency for _, latency, _ in results]) * 1000
    failures = [error for ok, _, error in results if not ok]
    report = {
        "url": url,
        "checkpoint": str(args.checkpoint),
        "images": len(images),
        "distinct_captions": len(set(expected.values())),  # answers mixed up between images would show
        "clients": args.clients,
        "requests": len(results),
        "successes": len(results) - len(failures),
        "failures": len(failures),
        "first_errors": failures[:3],
        "concurrency_limit": QUEUE["default_concurrency_limit"],
        "beam_size": options[0],
        "max_length": options[2],
        "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)), 1) for q in (50, 90, 99)}
        | {"max": round(float(latencies.max()), 1)},
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(results) / wall, 2),
    }
    print(json.dumps(report, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
