"""The one timer of the benchmarks: `repeats` timed runs after a warm-up, in milliseconds."""

import statistics
import time


def times_ms(run, repeats: int) -> list[float]:
    run()  # warm-up: first-touch allocations, lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(1000 * (time.perf_counter() - start))
    return times


def median_ms(run, repeats: int) -> float:
    return statistics.median(times_ms(run, repeats))
