"""Report benchmark: grading, analysis and rendering of a large run, each in its own process.

    python bench/bench_report.py [--probes 20000] [--variants 5] [--samples 1] [--keep DIR] [--reuse DIR]

The run is made the honest way: `auditor run` sends every request of a generated suite (one target, one
challenge, PROBES probes x VARIANTS variants x SAMPLES samples, a quarter of the probes failing by their
criterion) to the fixed-latency OpenAI-compatible server of bench/server.py in its own process, and grades
the replies. Then, each in a fresh process whose wall time and peak RSS are measured (os.wait4):
`auditor grade RUN` (grading alone), and `auditor report RUN --format html,pdf` (analysis and rendering).
Prints figures and ratios against the targets: report in under 60 s and under 1 GB peak RSS at 100,000 items,
a PDF whose length does not grow with the number of probes, and a per-probe CSV with one row per probe.

--keep DIR keeps the archive (and the reports) in DIR; --reuse DIR measures again on an archive kept so.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_executor import bench_server, write_targets  # noqa: E402

TARGET_S, TARGET_MB = 60.0, 1024.0


def write_suite(folder: Path, probes: int, variants: int, samples: int) -> Path:
    """One challenge of `probes` probes, each with `variants` variable values and `samples` samples; every fourth
    probe asks for a word the bench server never says, so it fails on every trial. Two contexts: one rule on the
    challenge, one decided per probe."""
    suite = {
        "format": "auditor-suite/1",
        "id": "bench-report",
        "version": "1",
        "title": "Report benchmark",
        "defaults": {"params": {"temperature": 0, "max_tokens": 4}, "samples": samples},
        "challenges": [
            {
                "id": "c",
                "title": "Says ok",
                "category": "behaviour",
                "severity": "medium",
                "description": "The model replies ok when asked to.",
                "probes": [
                    {
                        "id": f"p{i:06d}",
                        "prompt": f"Reply ok, probe {i}" + (", number {{n}}." if variants > 1 else "."),
                        **({"variables": {"n": [str(v) for v in range(variants)]}} if variants > 1 else {}),
                        "pass_if": {"type": "contains", "values": ["nope" if i % 4 == 0 else "ok"]},
                    }
                    for i in range(probes)
                ],
            }
        ],
        "policies": [
            {
                "id": "internal",
                "title": "Internal use",
                "rules": [{"id": "r", "select": {"ids": ["c"]}, "min_pass_rate": 0.5}],
            },
            {  # a rule decided per probe: one cell (and one reason when it is short) per probe
                "id": "customer",
                "title": "Customer facing",
                "rules": [{"id": "each", "select": {"ids": ["c"]}, "per": "probe", "min_pass_rate": 0.5}],
            },
        ],
    }
    path = folder / f"bench-report-{probes}x{variants}x{samples}.json"
    path.write_text(json.dumps(suite))
    return path


def measured(*args: str) -> tuple[float, float, str]:
    """Like run_auditor, with the child's own peak RSS from wait4 (Linux reports ru_maxrss in KB)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "auditor", *args], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise SystemExit(f"auditor {' '.join(args)} failed ({status}): {err.read().strip()[-2000:]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def pdf_pages(path: Path) -> int:
    """The page count of a PDF (pdfinfo when installed, else the /Type /Page objects)."""
    try:
        info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
        return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]
    except (OSError, subprocess.CalledProcessError, AttributeError):
        return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", type=int, default=20_000)
    parser.add_argument("--variants", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--keep", type=Path, help="Keep the archive and reports in this folder.")
    parser.add_argument("--reuse", type=Path, help="Measure grade and report again on an archive kept with --keep.")
    args = parser.parse_args()
    items = args.probes * args.variants * args.samples
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.reuse or args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        archive = str(folder / "audits")
        results: dict[str, float] = {"items": items, "probes": args.probes}
        if args.reuse is None:
            suite = write_suite(folder, args.probes, args.variants, args.samples)
            with bench_server(0) as url:
                targets = write_targets(folder, url, args.concurrency)
                wall, peak, out = measured(
                    "run", str(suite), "--targets", str(targets), "--archive", archive, "--quiet", "--no-cache",
                    "--max-items", str(max(items, 200_000)),
                )  # fmt: skip
            results.update(run_s=wall, run_peak_mb=peak)
            print(
                f"run ({items:,} items: {args.probes:,} probes x {args.variants} variants x {args.samples} samples; "
                f"execute + store + grade + analyse): {wall:.1f} s, peak RSS {peak:.0f} MB"
            )
        wall, peak, out = measured("grade", "latest", "--archive", archive)
        results.update(grade_s=wall, grade_peak_mb=peak)
        print(f"grade (re-grade every stored reply): {wall:.1f} s, peak RSS {peak:.0f} MB  [{out.strip()}]")
        reports = folder / "reports"
        wall, peak, out = measured(
            "report", "latest", "--format", "html,pdf,csv", "--out", str(reports), "--archive", archive
        )
        written = [Path(line.strip()) for line in out.splitlines() if line.strip()]
        pdf = next(p for p in written if p.suffix == ".pdf")
        html = next(p for p in written if p.suffix == ".html")
        csvs = sorted(reports.glob("*.csv"))
        rows = sum(1 for _ in csv.reader(csvs[0].open())) - 1 if csvs else 0
        pages = pdf_pages(pdf)
        results.update(
            report_s=wall,
            report_peak_mb=peak,
            pdf_pages=pages,
            html_mb=html.stat().st_size / 1e6,
            pdf_mb=pdf.stat().st_size / 1e6,
            csv_rows=rows,
        )
        print(
            f"report (analyse + HTML + PDF): {wall:.1f} s (target < {TARGET_S:.0f} s, ratio {wall / TARGET_S:.2f}), "
            f"peak RSS {peak:.0f} MB (target < {TARGET_MB:.0f}, ratio {peak / TARGET_MB:.2f}); "
            f"PDF {pages} pages, {pdf.stat().st_size / 1e6:.1f} MB; HTML {html.stat().st_size / 1e6:.2f} MB; "
            f"per-probe CSV {rows:,} rows (probes: {args.probes:,})"
        )
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
