"""Worker processes benchmark: what `auditor run --workers N` gains over one process.

    python bench/bench_workers.py [--n 5000] [--workers 2] [--fast-n 4000] [--skip-latency]

1. Latency-bound: an endpoint answering after 1 s, 256 requests in flight, N probes. Ideal time N / 256 s;
   efficiency = ideal / measured time (start-up of the workers included), target >= 0.9. The same run in one
   process, and the floor script (below) at the same setting, are shown beside it.
2. CPU-bound: an endpoint answering at once (0 ms), 64 in flight. Throughput of auditor with N workers against the
   single-process floor (openai.AsyncOpenAI and a semaphore, nothing stored), target >= 1.6x; one auditor
   process is shown beside it.

The server runs in its own process (bench/server.py). Each auditor figure is the run's execution timed in process
as bench_executor times it (workers started, every reply stored, parts compacted, manifest sealed), the process the
workers fork from started first as `auditor run --workers N` does; the latency-bound figures are also given from
before the run is made (suite read and planned). The floor and auditor run one after the other against the same
server. Prints the load average (other work on the machine skews every figure), figures, ratios and a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

from bench_executor import bench_server, floor, write_suite, write_targets


def send(folder: Path, suite: Path, targets: Path, workers: int) -> tuple[float, float]:
    """Send every item of a new run with `workers` processes (1: in this process), as `auditor run` does but for
    grading. Returns the seconds from before the run is made (suite read and planned, the workers' process started)
    and from the start of its execution (as bench_executor times it) to its end: every reply stored, parts
    compacted, manifest sealed."""
    from auditor import pipeline
    from auditor.run.launch import Workers
    from auditor.suite.targets import load_targets

    start = time.perf_counter()
    fan_out = Workers(workers) if workers > 1 else None
    if fan_out is not None:  # as `auditor run --workers N` does first
        fan_out.warm()
    run = pipeline.start_run(suite, load_targets(targets), pipeline.RunOptions(folder / f"audits-{workers}"))
    executing = time.perf_counter()
    outcome = pipeline.execute_run(run, pipeline.ExecOptions(use_cache=False, fan_out=fan_out))
    end = time.perf_counter()
    if outcome["status"] != "complete":
        raise SystemExit(f"the run ended {outcome['status']}")
    return end - start, end - executing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000, help="probes in the latency-bound scenario")
    parser.add_argument("--fast-n", type=int, default=4000, help="probes in the CPU-bound scenario")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    w = args.workers
    results: dict[str, float] = {"cores": float(os.cpu_count() or 1), "workers": float(w)}
    print(f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine skews every figure)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_latency:
            n, conc = args.n, 256
            suite = write_suite(folder, n)
            ideal = n / conc * 1.0
            with bench_server(1000) as url:
                targets = write_targets(folder, url, conc)
                whole, parallel = send(folder, suite, targets, w)
                whole_single, single = send(folder, suite, targets, 1)
                floor_s = asyncio.run(floor(url, n, conc))
            results.update(
                latency_ideal_s=ideal,
                latency_workers_s=parallel,
                latency_efficiency=ideal / parallel,
                latency_workers_whole_s=whole,
                latency_whole_efficiency=ideal / whole,
                latency_single_s=single,
                latency_single_efficiency=ideal / single,
                latency_single_whole_efficiency=ideal / whole_single,
                latency_floor_efficiency=ideal / floor_s,
            )
            print(
                f"1. latency-bound, N={n}, 1 s, {conc} in flight: ideal {ideal:.1f} s; {w} workers {parallel:.1f} s, "
                f"efficiency {ideal / parallel:.2f} (target >= 0.90), {whole:.1f} s and {ideal / whole:.2f} with the "
                f"run's making; one process {single:.1f} s, efficiency {ideal / single:.2f} "
                f"({ideal / whole_single:.2f} with the run's making); floor script (one process) {floor_s:.1f} s, "
                f"efficiency {ideal / floor_s:.2f}"
            )
        n, conc = args.fast_n, 64
        suite = write_suite(folder, n)
        with bench_server(0) as url:
            targets = write_targets(folder, url, conc)
            floor_s = asyncio.run(floor(url, n, conc))
            _, parallel = send(folder, suite, targets, w)
            _, single = send(folder, suite, targets, 1)
        results.update(
            fast_floor_rps=n / floor_s,
            fast_workers_rps=n / parallel,
            fast_single_rps=n / single,
            fast_ratio=floor_s / parallel,
        )
        print(
            f"2. CPU-bound, N={n}, 0 ms, {conc} in flight: floor (one process, openai) {n / floor_s:.0f} req/s; "
            f"auditor {w} workers {n / parallel:.0f} req/s, {floor_s / parallel:.2f}x the floor (target >= 1.6); "
            f"auditor one process {n / single:.0f} req/s, {floor_s / single:.2f}x"
        )
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
