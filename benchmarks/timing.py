"""The timer of the benchmarks, in milliseconds: one run, or `repeats` timed runs after a warm-up."""

import statistics
import time


def once_ms(run) -> float:
    """One run, timed, with no warm-up (for runs that change what they run on, like training steps)."""
    start = time.perf_counter()
    run()
    return 1000 * (time.perf_counter() - start)


def times_ms(run, repeats: int) -> list[float]:
    run()  # warm-up: first-touch allocations, lazy initialisation
    return [once_ms(run) for _ in range(repeats)]


def median_ms(run, repeats: int) -> float:
    return statistics.median(times_ms(run, repeats))
