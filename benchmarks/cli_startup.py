"""Start-up of the `caption` command: the wall time of captioning one image with the bundled model.

Each run is a fresh process, as a user at the shell starts it: `caption scene.png` on a shapes scene
written to a temporary folder. Prints one JSON object: the median and min wall time of --runs runs
in seconds, and the median time of `import captioner.cli.caption` in a fresh interpreter (most of
the wall time is imports; `python -X importtime -c "import captioner.cli.caption"` says which).

    python benchmarks/cli_startup.py [--runs 5]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from captioner.data.shapes import make_scene, render

IMPORT_TIME = "import time; t = time.perf_counter(); import captioner.cli.caption; print(time.perf_counter() - t)"


def caption_command() -> list[str]:
    """The `caption` console script beside this interpreter, else the module it runs."""
    script = Path(sys.executable).with_name("caption")
    return [str(script)] if script.exists() else [sys.executable, "-m", "captioner.cli.caption"]


def wall_time_s(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def import_time_s() -> float:
    out = subprocess.run([sys.executable, "-c", IMPORT_TIME], check=True, capture_output=True, text=True).stdout
    return float(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(0)
        image = Path(folder) / "scene.png"
        render(make_scene(rng), rng).save(image)
        command = [*caption_command(), str(image)]
        walls = [wall_time_s(command) for _ in range(args.runs)]
    imports = [import_time_s() for _ in range(args.runs)]
    print(json.dumps({
        "command": "caption scene.png",
        "runs": args.runs,
        "wall_median_s": round(statistics.median(walls), 2),
        "wall_min_s": round(min(walls), 2),
        "import_median_s": round(statistics.median(imports), 2),
    }))


if __name__ == "__main__":
    main()
