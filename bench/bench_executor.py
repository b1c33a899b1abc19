"""Executor benchmark: overhead against a practical floor, latency-bound efficiency, and scale.

    python bench/bench_executor.py [--n 2000] [--scale 100000] [--skip-scale]

Each scenario runs a fixed-latency OpenAI-compatible server (bench/server.py) in its own process on
127.0.0.1, so the server does not share the measured process's interpreter. Prints figures and
ratios against the targets: throughput >= 0.8 of the floor, efficiency >= 0.9, peak RSS < 500 MB at
100,000 items, resuming a finished run sends 0 requests in under 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent


@contextmanager
def bench_server(latency_ms: float) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), str(latency_ms)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def served(url: str) -> int:
    with urllib.request.urlopen(url + "/stats") as r:
        return int(json.load(r)["requests"])


def write_suite(folder: Path, n: int) -> Path:
    suite = {
        "format": "auditor-suite/1",
        "id": "bench",
        "version": "1",
        "title": "Benchmark",
        "defaults": {"params": {"temperature": 0, "max_tokens": 4}},
        "challenges": [
            {
                "id": "c",
                "title": "C",
                "category": "behaviour",
                "severity": "low",
                "description": "d",
                "probes": [
                    {
                        "id": "p",
                        "prompt": "Reply ok, number {{i}}.",
                        "variables": {"i": [str(i) for i in range(n)]},
                        "pass_if": {"type": "contains", "values": ["ok"]},
                    }
                ],
            }
        ],
        "policies": [{"id": "p", "title": "P", "rules": [{"id": "r", "select": {"ids": ["c"]}, "min_pass_rate": 0.5}]}],
    }
    path = folder / f"bench-{n}.json"
    path.write_text(json.dumps(suite))
    return path


def write_targets(folder: Path, url: str, concurrency: int) -> Path:
    path = folder / "targets.json"
    path.write_text(
        json.dumps(
            {
                "targets": [
                    {
                        "name": "bench",
                        "base_url": url,
                        "model": "bench-model",
                        "limits": {"concurrency": concurrency, "max_retries": 2},
                    }
                ]
            }
        )
    )
    return path


def run_auditor(folder: Path, *args: str) -> tuple[float, float, str]:
    """Run the auditor CLI in a subprocess; return wall time, its own peak RSS in MB, and its last output line."""
    start = time.perf_counter()
    out_path = folder / "stdout.txt"
    with out_path.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "auditor", *args], stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"auditor {' '.join(args)} failed with status {status}")
    lines = out_path.read_text().strip().splitlines()
    return time.perf_counter() - start, usage.ru_maxrss / 1024, lines[-1] if lines else ""


def time_execution(folder: Path, suite: Path, targets: Path) -> float:
    """Time only the sending stage of auditor (plan + execute + store), in process."""
    from auditor import pipeline
    from auditor.suite.targets import load_targets

    run = pipeline.start_run(suite, load_targets(targets), pipeline.RunOptions(folder / "audits-inproc"))
    start = time.perf_counter()
    pipeline.execute_run(run, pipeline.ExecOptions(use_cache=False))
    return time.perf_counter() - start


async def floor(url: str, n: int, concurrency: int) -> float:
    """The practical floor: AsyncOpenAI and a semaphore, nothing stored."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(
                model="bench-model",
                messages=[{"role": "user", "content": f"Reply ok, number {i}."}],
                temperature=0,
                max_tokens=4,
            )

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--also-concurrency",
        type=int,
        nargs="*",
        default=[16, 8],
        help="Further concurrency levels for the latency-bound scenario.",
    )
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    n, conc = args.n, args.concurrency
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suite = write_suite(folder, n)

        with bench_server(0) as url:
            targets = write_targets(folder, url, conc)
            floor_s = asyncio.run(floor(url, n, conc))
            auditor_s = time_execution(folder, suite, targets)
        results["overhead_floor_rps"] = n / floor_s
        results["overhead_auditor_rps"] = n / auditor_s
        results["overhead_ratio"] = floor_s / auditor_s
        print(
            f"1. overhead, N={n}, 0 ms, concurrency {conc}: floor {n / floor_s:.0f} req/s, "
            f"auditor {n / auditor_s:.0f} req/s, ratio {floor_s / auditor_s:.2f} (target >= 0.80)"
        )

        with bench_server(50) as url:
            for c in dict.fromkeys([conc, *args.also_concurrency]):
                targets = write_targets(folder, url, c)
                ideal = n * 0.050 / c
                achieved = time_execution(folder, suite, targets)
                floor_50 = asyncio.run(floor(url, n, c))
                results[f"latency_efficiency_c{c}"] = ideal / achieved
                results[f"latency_floor_efficiency_c{c}"] = ideal / floor_50
                print(
                    f"2. latency-bound, N={n}, 50 ms, concurrency {c}: ideal {ideal:.2f} s, auditor {achieved:.2f} s, "
                    f"efficiency {ideal / achieved:.2f} (target >= 0.90); floor script {floor_50:.2f} s, "
                    f"efficiency {ideal / floor_50:.2f}"
                )

        if not args.skip_scale:
            big = write_suite(folder, args.scale)
            with bench_server(0) as url:
                targets = write_targets(folder, url, conc)
                archive = str(folder / "audits")
                wall, peak_mb, run_id = run_auditor(
                    folder, "run", str(big), "--targets", str(targets), "--archive", archive, "--quiet", "--no-cache"
                )
                sent = served(url)
                resume_s, _, _ = run_auditor(folder, "run", "--resume", run_id, "--archive", archive, "--quiet")
                resent = served(url) - sent
            results.update(
                scale_items=args.scale,
                scale_wall_s=wall,
                scale_peak_rss_mb=peak_mb,
                resume_s=resume_s,
                resume_requests=resent,
            )
            print(
                f"3. scale, {args.scale} items, 0 ms: {wall:.1f} s wall ({args.scale / wall:.0f} req/s incl. grading), "
                f"peak RSS {peak_mb:.0f} MB (target < 500); "
                f"resume of the finished run: {resent} requests, {resume_s:.2f} s (targets 0 and < 5 s)"
            )
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
