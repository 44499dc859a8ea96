"""Speed and load test of the demo page's `/caption` endpoint; prints one JSON object.

Serves the page in-process on 127.0.0.1 (or uses a running one at --url, which must be local and
serve the same --checkpoint). Requests go as a browser sends them (`PageClient`): upload the file,
join the queue, read the event stream until the answer. gradio_client's `Client` does the same but
looks at its stream's messages only every 50 ms, a wait that no browser has, so its latency is
measured apart ("single_gradio_client").

First one client sends --sequential requests one after another: their median latency is what one
visitor waits for a caption ("single_client.latency_ms"). Then --clients threads, each with its own
client, send --requests requests each at once, cycling
over a few images (the bundled examples, or random shapes scenes when there are none); one request
of each client is a bad upload, a text file named like an image. Every answer is checked against
the handler called directly on the same image (the caption, its words, the strip's captions, the
details); every bad upload must be refused with its message ("not an image"). A wrong answer, an
error on a good image or a bad upload let through counts as a failure. Latency is per request, from
submit to result, as the client sees it: under load it includes the queue wait (the page runs
QUEUE["default_concurrency_limit"] captions at once).

    python benchmarks/load_app.py [--checkpoint assets/shapes_model.pt] [--url http://127.0.0.1:7860/]
                                  [--sequential 30] [--clients 8] [--requests 6] [--beam-size 3]

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
import uuid
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx
from gradio_client import Client, handle_file

from captioner.app import QUEUE, create_demo, example_images, launch
from captioner.assets import BUNDLED_CHECKPOINT
from captioner.demo_handlers import CaptionDemo, random_scene

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
TIMEOUT_S = 120  # per request, and for all clients to connect: the run always ends


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Concurrent gradio_client load on the demo's /caption endpoint.")
    parser.add_argument("--checkpoint", default=str(BUNDLED_CHECKPOINT),
                        help="checkpoint served (and used to check answers)")
    parser.add_argument("--url", help="a running page on this machine (default: serve one in-process)")
    parser.add_argument("--sequential", type=int, default=30, help="requests of the single-client phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, one thread and Client each")
    parser.add_argument("--requests", type=int, default=6, help="requests per client, one of them a bad upload")
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


BAD_UPLOAD_MESSAGE = "not an image"


class AppError(Exception):
    """The page refused a request; the message is the one it shows."""


class PageClient:
    """Calls `/caption` the way the page's JavaScript does: POST the file to `upload`, POST the
    call to `queue/join`, read `queue/data` (server-sent events) until `process_completed`."""

    def __init__(self, url: str):
        self.base = url.rstrip("/") + "/gradio_api/"
        self.http = httpx.Client(timeout=TIMEOUT_S)
        config = self.http.get(url.rstrip("/") + "/config").raise_for_status().json()
        self.fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "caption")

    def predict(self, path: Path, *options) -> list:
        with path.open("rb") as f:
            (server_path,) = self.http.post(self.base + "upload", files=[("files", (path.name, f))]).raise_for_status().json()
        image = {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        session = uuid.uuid4().hex
        joined = self.http.post(self.base + "queue/join", json={"data": [image, *options], "fn_index": self.fn_index,
                                                                "session_hash": session})
        event_id = joined.raise_for_status().json()["event_id"]
        with self.http.stream("GET", self.base + "queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                    if not message.get("success"):
                        raise AppError(message["output"].get("error"))
                    return message["output"]["data"][:5]  # the sixth output is the page's State, not for clients
        raise AppError("the event stream ended without an answer")

    def close(self) -> None:
        self.http.close()


class GradioClient:
    """The same call through gradio_client."""

    def __init__(self, url: str):
        self.client = Client(url, verbose=False, download_files=False)

    def predict(self, path: Path, *options) -> list:
        return self.client.submit(handle_file(str(path)), *options, api_name="/caption").result(timeout=TIMEOUT_S)

    def close(self) -> None:
        self.client.close()


def run_client(url: str, jobs: list[tuple[Path, dict | None]], options: tuple, start: threading.Barrier,
               results: list, kind=PageClient) -> None:
    """Send `jobs` (image, the expected answer, or None for a bad upload) one after another; append
    (good: bool, ok: bool, latency_s, error) for each."""
    try:
        client = kind(url)
    except Exception as error:  # the page is not there: every request of this client fails
        client, message = None, f"cannot connect: {type(error).__name__}: {error}"
    start.wait(TIMEOUT_S)
    if client is None:
        results.extend((expected is not None, False, 0.0, message) for _, expected in jobs)
        return
    for path, expected in jobs:
        began = time.perf_counter()
        try:
            text, words, gallery, _, details = client.predict(path, *options)
            latency = time.perf_counter() - began
            if expected is None:
                results.append((False, False, latency, f"{path.name}: a bad upload was captioned {text!r}"))
                continue
            ok = (text == expected["text"] and [w["token"] for w in words] == text.split()
                  and [g["caption"] for g in gallery] == expected["strip"] and details == expected["details"])
            results.append((True, ok, latency, None if ok else f"{path.name}: got {text!r}, expected {expected['text']!r}"))
        except Exception as error:  # an AppError, a timeout, a dropped connection
            latency, message = time.perf_counter() - began, f"{path.name}: {type(error).__name__}: {error}"
            refused = expected is None and BAD_UPLOAD_MESSAGE in str(error)
            results.append((expected is not None, refused, latency, None if refused else message))
    client.close()


def free_port() -> int:
    with socket.socket() as s:  # launch(server_port=0) fails gradio's own health check
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latency_ms(latencies: list[float]) -> dict:
    values = np.array(latencies) * 1000
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in (50, 90, 99)} | {"max": round(float(values.max()), 1)}


def run_phase(url: str, client_jobs: list[list], options: tuple, kind=PageClient) -> tuple[list, float]:
    """Each list of jobs sent by its own client, all clients at once: (results, wall seconds)."""
    results: list = []
    start = threading.Barrier(len(client_jobs) + 1)
    threads = [threading.Thread(target=run_client, args=(url, jobs, options, start, results, kind), daemon=True)
               for jobs in client_jobs]
    for thread in threads:
        thread.start()
    start.wait(TIMEOUT_S)
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.url and urlparse(args.url).hostname not in LOCAL_HOSTS:
        sys.exit(f"error: --url must be on this machine ({', '.join(sorted(LOCAL_HOSTS))}), got {args.url}")
    demo = CaptionDemo.from_checkpoint(args.checkpoint)
    decoding = (args.beam_size, "none", args.max_length or demo.config.decode.max_length)
    options = (*decoding, demo.config.model.attention)  # the page's picker sends its model too
    with tempfile.TemporaryDirectory(prefix="captioner-load-") as tmp:
        os.environ["GRADIO_TEMP_DIR"] = str(Path(tmp) / "gradio")  # read when the components are built
        images = load_images(Path(tmp), args.images)
        expected = {}
        for path in images:
            text, _, strip, _, details, _ = demo.caption(str(path), *decoding)  # read as the server reads it
            expected[path] = {"text": text, "strip": [label for _, label in strip], "details": details}
        bad = Path(tmp) / "bad_upload.png"
        bad.write_text("a text file named like an image")
        page = None
        url = args.url
        if url is None:
            page = create_demo(demo=demo)
            launch(page, port=free_port(), prevent_thread_lock=True, quiet=True)
            url = page.local_url
        sequential = [(images[r % len(images)], expected[images[r % len(images)]]) for r in range(args.sequential)]
        single, _ = run_phase(url, [sequential], options)
        single_gradio, _ = run_phase(url, [sequential], options, GradioClient)
        client_jobs = []
        for c in range(args.clients):
            jobs = [(images[(c + r) % len(images)], expected[images[(c + r) % len(images)]]) for r in range(args.requests - 1)]
            jobs.insert(c % args.requests, (bad, None))  # the bad upload at a different place for each client
            client_jobs.append(jobs)
        results, wall = run_phase(url, client_jobs, options)
        if page is not None:
            with contextlib.redirect_stdout(sys.stderr):  # gradio prints "Closing server..."; stdout is the JSON
                page.close()
    failures = [error for _, ok, _, error in single + single_gradio + results if not ok]
    good = [(ok, latency) for is_good, ok, latency, _ in results if is_good]
    bad_ones = [ok for is_good, ok, _, _ in results if not is_good]
    report = {
        "url": url,
        "checkpoint": str(args.checkpoint),
        "images": len(images),
        "distinct_captions": len({e["text"] for e in expected.values()}),  # mixed-up answers would show
        "beam_size": options[0],
        "max_length": options[2],
        "single_client": {"requests": len(single), "answered": sum(ok for _, ok, _, _ in single),
                          "latency_ms": latency_ms([latency for *_, latency, _ in single])},
        "single_gradio_client": {"requests": len(single_gradio), "answered": sum(ok for _, ok, _, _ in single_gradio),
                                 "latency_ms": latency_ms([latency for *_, latency, _ in single_gradio])},
        "concurrent": {
            "clients": args.clients,
            "concurrency_limit": QUEUE["default_concurrency_limit"],
            "good_requests": len(good),
            "good_answered": sum(ok for ok, _ in good),
            "bad_uploads": len(bad_ones),
            "bad_refused": sum(bad_ones),
            "latency_ms": latency_ms([latency for _, latency in good]),
            "wall_s": round(wall, 2),
            "requests_per_s": round(len(results) / wall, 2),
        },
        "failures": len(failures),
        "first_errors": failures[:3],
    }
    print(json.dumps(report, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
