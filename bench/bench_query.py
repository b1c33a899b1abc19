"""Query benchmark: `auditor query` GROUP BY over an archive of many runs.

    python bench/bench_query.py [--runs 100] [--items 1000] [--parallel 1] [--keep DIR] [--reuse DIR]

The archive is made the honest way: RUNS separate `auditor run` processes, PARALLEL at a time (with two at a time
one run once failed reading a part file of another run that the other's compaction had just removed), each sending
the ITEMS requests of a generated suite (20 probes x ITEMS/20 variants, one challenge, a quarter failing) to the
fixed-latency OpenAI-compatible server of bench/server.py in its own process, with grading and no cache. Then
each query runs as a fresh `auditor query` process (median wall time of 3), beside `auditor query "SELECT 1"`
(start-up and opening the archive). Prints figures and ratios against the target: under 2 s.

--keep DIR keeps the archive in DIR; --reuse DIR times the queries again on an archive kept so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_executor import bench_server, write_targets  # noqa: E402

TARGET_S = 2.0
QUERIES = {
    "pass rate per run and target": "SELECT run_id, target, count(*) AS n, avg((outcome = 'pass')::int) AS pass_rate "
    "FROM grades GROUP BY ALL ORDER BY ALL",
    "pass rate per target and challenge (all runs)": "SELECT target, challenge_id, count(*) AS n, "
    "avg((outcome = 'pass')::int) AS pass_rate FROM grades GROUP BY ALL",
    "latency per run": "SELECT run_id, count(*) AS n, median(latency_s) AS p50, sum(completion_tokens) AS tokens "
    "FROM responses GROUP BY run_id ORDER BY run_id",
    "failures per probe, joined to replies": "SELECT g.probe_id, count(*) AS failures, max(length(r.content)) AS "
    "longest FROM grades g JOIN responses r USING (run_id, item_id) WHERE g.outcome = 'fail' GROUP BY ALL",
}


def write_suite(folder: Path, items: int) -> Path:
    probes = 20
    suite = {
        "format": "auditor-suite/1",
        "id": "bench-query",
        "version": "1",
        "title": "Query benchmark",
        "defaults": {"params": {"temperature": 0, "max_tokens": 4}},
        "challenges": [
            {
                "id": "c",
                "title": "Says ok",
                "category": "behaviour",
                "severity": "low",
                "description": "d",
                "probes": [
                    {
                        "id": f"p{i:02d}",
                        "prompt": f"Reply ok, probe {i}, number {{{{n}}}}.",
                        "variables": {"n": [str(v) for v in range(max(1, items // probes))]},
                        "pass_if": {"type": "contains", "values": ["nope" if i % 4 == 0 else "ok"]},
                    }
                    for i in range(probes)
                ],
            }
        ],
        "policies": [{"id": "p", "title": "P", "rules": [{"id": "r", "select": {"ids": ["c"]}, "min_pass_rate": 0.5}]}],
    }
    path = folder / "bench-query.json"
    path.write_text(json.dumps(suite))
    return path


def auditor(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "auditor", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"auditor {' '.join(args)[:200]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--reuse", type=Path)
    args = parser.parse_args()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.reuse or args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        archive = str(folder / "audits")
        if args.reuse is None:
            suite = write_suite(folder, args.items)
            start = time.perf_counter()
            with bench_server(0) as url:
                targets = write_targets(folder, url, 32)

                def one(k: int) -> float:
                    run = ("run", str(suite), "--targets", str(targets), "--archive", archive, "--quiet")
                    return auditor(*run, "--no-cache", "--label", f"bench {k}")[0]

                with ThreadPoolExecutor(args.parallel) as pool:
                    walls = list(pool.map(one, range(args.runs)))
            built = time.perf_counter() - start
            results.update(build_s=built, run_median_s=statistics.median(walls))
            print(
                f"archive: {args.runs} runs x {args.items:,} items made by auditor run in {built:.0f} s "
                f"(median {statistics.median(walls):.1f} s per run, {args.parallel} at a time)"
            )
        _, counted = auditor("query", "SELECT count(DISTINCT run_id) AS runs, count(*) AS grades FROM grades",
                             "--format", "json", "--archive", archive)  # fmt: skip
        size = json.loads(counted)[0]
        print(f"archive holds {size['runs']} runs, {size['grades']:,} grades")
        results.update(runs=size["runs"], grades=size["grades"])
        startup = statistics.median(auditor("query", "SELECT 1", "--archive", archive)[0] for _ in range(3))
        results["select_1_s"] = startup
        print(f"auditor query 'SELECT 1' (start-up, opening the archive): {startup:.2f} s")
        for name, sql in QUERIES.items():
            wall = statistics.median(
                auditor("query", sql, "--format", "csv", "--archive", archive)[0] for _ in range(3)
            )
            results[name] = wall
            print(f"{name}: {wall:.2f} s (target < {TARGET_S:.0f} s, ratio {wall / TARGET_S:.2f})")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
