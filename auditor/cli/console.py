"""Terminal output: live progress per target and plain tables of query results."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from typing import Any


def _line(name: str, x: Any, elapsed: float) -> str:
    rate = x.done / elapsed if elapsed > 0 else 0.0
    eta = (x.total - x.done) / rate if rate > 0 else 0.0
    return (
        f"[{name}] {x.done}/{x.total} done, {rate:.1f}/s, eta {eta:.0f}s, {x.errors} errors, {x.retries} retries, "
        f"{x.prompt_tokens + x.completion_tokens} tokens, ${x.cost:.4f}"
    )


class Progress:
    """Progress per target: a live display on a terminal, plain lines every 10 s otherwise, nothing if quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = 0.0
        self.live: Any = None
        self.tasks: dict[str, Any] = {}
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
            )
            self.live.start()

    def __call__(self, tallies: dict[str, Any]) -> None:
        if self.quiet:
            return
        t = time.monotonic()
        if self.live is not None:
            for name, x in tallies.items():
                if name not in self.tasks:
                    self.tasks[name] = self.live.add_task(name, total=x.total, info="")
                rate = x.done / max(1e-9, t - x.started)
                info = (
                    f"{rate:.1f}/s  {x.errors} err  {x.retries} retries  "
                    f"{x.prompt_tokens + x.completion_tokens} tok  ${x.cost:.4f}  conc {x.concurrency}"
                )
                self.live.update(self.tasks[name], completed=x.done, info=info)
            return
        finished = all(x.done >= x.total for x in tallies.values())
        if t - self.last < 10 and not finished:
            return
        self.last = t
        for name, x in tallies.items():
            print(_line(name, x, t - x.started), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional overrides that reorder what is shown
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (escape sequences, bidi overrides) shown as \\x.. escapes."""
    return _CONTROL.sub(lambda m: _escape(m.group(0)), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_safe(text: str) -> str:
    # JSON escapes C0 controls itself; DEL, C1 and bidi overrides become \\u escapes, still valid JSON
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def format_rows(names: list[str], rows: list[tuple[Any, ...]], fmt: str, terminal: bool = True) -> str:
    """Rows as a table, CSV or JSON. For a `terminal`, control characters in values are escaped (JSON escapes its
    own); CSV written to a file or pipe keeps the values byte for byte."""
    if fmt == "json":
        return (
            _json_safe(json.dumps([dict(zip(names, r)) for r in rows], indent=2, default=str, ensure_ascii=False))
            + "\n"
        )
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        if terminal:
            writer.writerows([[printable(v) if isinstance(v, str) else v for v in r] for r in rows])
        else:
            writer.writerows(rows)
        return buf.getvalue()
    cells = [[printable(("" if v is None else str(v)).replace("\n", " ")) for v in r] for r in rows]
    widths = [min(60, max([len(n)] + [len(c[i]) for c in cells])) for i, n in enumerate(names)]

    def line(values: list[str]) -> str:
        return "  ".join((v if len(v) <= w else v[: w - 1] + "…").ljust(w) for v, w in zip(values, widths)).rstrip()

    out = [line(names), line(["-" * w for w in widths])] + [line(c) for c in cells]
    return "\n".join(out) + f"\n({len(rows)} rows)\n"
