"""The one timer of the benchmarks: the median of `repeats` runs after a warm-up, in milliseconds."""

import statistics
import time


def median_ms(run, repeats: int) -> float:
    run()  # warm-up: first-touch allocations, lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)
