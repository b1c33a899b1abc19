"""Renders a report object to HTML with a strict Jinja2 environment, and the same HTML to PDF.

Templates are a skeleton (report.html.j2) and partials, loaded from a custom folder first and the bundled one
after, so a team overrides one partial (the cover, say) and keeps the rest. The HTML carries a Content Security
Policy that allows nothing to load and only the report's own inline script to run, so hostile model text can
neither execute nor fetch, in a browser or in the PDF renderer.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.errors import ConfigError, RenderError
from auditor.report.analyse import Report
from auditor.report.figures import charts
from auditor.report.settings import ReportSettings, fixed_text
from auditor.report.verdicts import pct
from auditor.resources import data_dir

TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class Section:
    """A numbered section (1, 2 ...) or a lettered appendix (A, B ...) of the report."""

    id: str
    number: str
    title: str


# (id, fixed-text key, shown when) in reading order; appendices last
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("recommendation", "recommendation", "always"),
    ("decisions", "decisions", "always"),
    ("results", "results", "always"),
    ("validity", "validity", "always"),
    ("attacks", "attacks", "attacks"),
    ("balance", "balance", "balances"),
    ("bias", "bias", "bias"),
    ("comparison", "comparison", "pairings"),
    ("drift", "drift", "baseline"),
    ("findings", "findings", "always"),
    ("attestations", "attestations", "attestations"),
    ("controls", "controls", "always"),
    ("targets", "targets", "always"),
    ("method", "method", "always"),
    ("signoff", "signoff", "always"),
)
APPENDICES: tuple[tuple[str, str, str], ...] = (
    ("sampling", "sampling", "always"),
    ("attack_figures", "attack_figures", "attacks"),
    ("evidence", "evidence", "withheld"),
    ("glossary", "glossary", "always"),
)


def sections(report: Report, text: dict[str, Any]) -> tuple[list[Section], list[Section]]:
    """The sections and appendices this report has, numbered in order."""
    withheld = any(e.withheld for f in report.findings for e in f.examples)

    def present(when: str) -> bool:
        return when == "always" or (when == "withheld" and withheld) or bool(getattr(report, when, None))

    body = [(i, k) for i, k, when in SECTIONS if present(when)]
    annex = [(i, k) for i, k, when in APPENDICES if present(when)]
    return (
        [Section(i, str(n), text[k]) for n, (i, k) in enumerate(body, start=1)],
        [Section(i, chr(ord("A") + n), text[k]) for n, (i, k) in enumerate(annex)],
    )


def outcome_by_challenge(report: Report) -> dict[str, str]:
    """Per measured challenge, the worst outcome of any rule on it in any context (fails, inconclusive, holds),
    for the web page's outcome filter."""
    rank = {"fails": 0, "inconclusive": 1, "holds": 2}
    worst = {f.challenge.id: "holds" for f in report.findings}
    for verdict in report.verdicts:
        for outcome in verdict.outcomes:
            for _, cell in outcome.cells:
                low = cell.decision[1]
                status = (
                    "holds"
                    if low >= outcome.rule.min_pass_rate
                    else "fails"
                    if cell.decision[2] < outcome.rule.min_pass_rate
                    else "inconclusive"
                )
                if cell.challenge_id in worst and rank[status] < rank[worst[cell.challenge_id]]:
                    worst[cell.challenge_id] = status
    return worst


REASONS_SHOWN = 10  # per rule outcome: the gravest cells short of the minimum; the rest are counted
PARAMETER_SETS_SHOWN = 5  # per challenge in the sampling appendix


@dataclass(frozen=True)
class Sampling:
    """One measured challenge as sampled: probes, samples per probe, variable combinations, parameter sets."""

    challenge_id: str
    probes: int
    samples: str
    variants: int
    parameters: tuple[str, ...]  # the first PARAMETER_SETS_SHOWN distinct sets, in suite order
    more_parameters: int  # distinct sets beyond those


def sampling(report: Report) -> list[Sampling]:
    """The sampling appendix's table, computed once here rather than in the template (a challenge may hold
    100,000 probes)."""
    out = []
    for f in report.findings:
        variants, samples, params = 0, set(), dict[str, None]()
        for p in f.challenge.probes:
            combos = 1
            for _, values in p.variables:
                combos *= len(values)
            variants += combos
            samples.add(p.samples)
            params.setdefault(", ".join("=".join(map(str, pair)) for pair in p.params), None)
        shown = tuple(params)[:PARAMETER_SETS_SHOWN]
        out.append(
            Sampling(f.challenge.id, len(f.challenge.probes), ", ".join(map(str, sorted(samples))), variants, shown,
                     len(params) - len(shown))
        )  # fmt: skip
    return out


def probes_csv_name(report: Report) -> str:
    """The file name of the per-probe table written beside the report."""
    return f"audit-{report.suite.id}-{report.run_id}-probes.csv"


def probe_rule_columns(report: Report) -> list[tuple[str, dict[tuple[str, str], str]]]:
    """For each rule decided per probe, its column name (context/rule) and each (target, probe)'s outcome under
    it: holds, fails or inconclusive."""
    columns: dict[str, dict[tuple[str, str], str]] = {}
    for verdict in report.verdicts:
        for outcome in verdict.outcomes:
            if outcome.rule.per != "probe":
                continue
            column = columns.setdefault(f"{verdict.policy.id}/{outcome.rule.id}", {})
            minimum = outcome.rule.min_pass_rate
            for _, cell in outcome.cells:
                _, low, high = cell.decision
                status = "holds" if low >= minimum else "fails" if high < minimum else "inconclusive"
                column[(cell.target, cell.challenge_id)] = status
    return sorted(columns.items())


def write_probes_csv(report: Report, path: Path) -> None:
    """Every probe of every target: trials by outcome as graded, pass rate over decided trials with its 95%
    Wilson interval, human review counts, and the outcome under each rule decided per probe."""
    import csv

    from auditor.stats import wilson

    rules = probe_rule_columns(report)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(
            ["target", "challenge_id", "probe_id", "trials", "passed", "failed", "errored", "unparseable",
             "pass_rate", "ci95_low", "ci95_high", "reviewed", "overridden_by_review", *(name for name, _ in rules)]
        )  # fmt: skip
        for p in report.probes:
            decided = p.passed + p.failed
            low, high = wilson(p.passed, decided)
            figures = [f"{p.passed / decided:.4f}", f"{low:.4f}", f"{high:.4f}"] if decided else ["", "", ""]
            out.writerow(
                [p.target, p.challenge_id, p.probe_id, p.trials, p.passed, p.failed, p.errored, p.unparseable,
                 *figures, p.reviewed, p.overrides, *(column.get((p.target, p.probe_id), "") for _, column in rules)]
            )  # fmt: skip
    tmp.replace(path)


def _interval(pair: tuple[float, float]) -> str:
    return f"{pct(pair[0])}–{pct(pair[1])}"


def clip(text: str, limit: int) -> str:
    """Model text cut to `limit` characters with a visible marker; the archive keeps the whole reply."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [… {len(text) - limit:,} more characters cut here; the archive holds the full text]"


def _decision_class(decision: str) -> str:
    classes = {"approve": "ok", "approve with conditions": "warn", "insufficient evidence": "unknown", "reject": "bad"}
    return classes.get(decision, "")


def environment(templates: Path | None) -> Any:
    """A Jinja2 environment: autoescape on (model output is hostile), undefined names are errors, and a loader that
    takes each template from `templates` when it has one and from the bundled folder otherwise."""
    import jinja2

    bundled = data_dir("report_templates")
    if templates is not None and not templates.is_dir():
        raise RenderError(f"{templates}: not a templates folder")
    folders = [str(templates), str(bundled)] if templates is not None else [str(bundled)]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = pct
    env.filters["interval"] = _interval
    env.filters["clip"] = clip
    env.filters["decision_class"] = _decision_class
    env.filters["num"] = lambda n: f"{n:,}"  # 20,000; render_html sets the language's separator
    return env


def _asset(name: str, templates: Path | None) -> str:
    for folder in (templates, data_dir("report_templates")):
        if folder is not None and (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8")
    return ""


def render_html(
    report: Report,
    templates: Path | None = None,
    settings: ReportSettings | None = None,
    probes_csv: str | None = None,
) -> str:
    """Render the report to one self-contained HTML document; `probes_csv` names the per-probe table written
    beside it (none: the report points to the archive instead)."""
    import jinja2

    settings = settings or ReportSettings()
    env = environment(templates)
    separator = "\u202f" if settings.language == "fr" else ","
    env.filters["num"] = lambda n: f"{n:,}".replace(",", separator)
    text = fixed_text(settings.language, templates)
    script = _asset("report.js", templates)
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; "
        "base-uri 'none'; form-action 'none'"
    )
    body, annex = sections(report, text)
    try:
        html = env.get_template(TEMPLATE).render(
            report=report,
            css=_asset("report.css", templates),
            script=script,
            csp=policy,
            t=text,
            settings=settings,
            sections=body,
            appendices=annex,
            section={s.id: s for s in body + annex},
            charts={c.id: c for c in charts(report)},
            status=outcome_by_challenge(report),
            glossary=text["glossary_terms"],
            sampling=sampling(report),
            probes_csv=probes_csv,
            reasons_shown=REASONS_SHOWN,
        )
    except jinja2.TemplateError as exc:
        where = f"{getattr(exc, 'filename', None) or TEMPLATE}:{getattr(exc, 'lineno', '?')}"
        raise RenderError(f"{where}: template error: {exc}") from None
    return str(html)


def write_pdf(html: str, path: Path) -> None:
    """Write the HTML as PDF through WeasyPrint."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        raise ConfigError(f"PDF output needs WeasyPrint and its system libraries (pango): {exc}") from None
    import logging

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.HTML(string=html, url_fetcher=_embedded_only()).write_pdf(str(path))


def _embedded_only() -> object:
    """A WeasyPrint URL fetcher for reports that fetches data: URIs only. A template that lets model text through
    unescaped still cannot make the renderer read local files or reach the network."""
    try:
        from weasyprint.urls import URLFetcher  # WeasyPrint >= 66

        return URLFetcher(allowed_protocols={"data"})
    except ImportError:  # older WeasyPrint: a plain function
        from weasyprint import default_url_fetcher

        def fetch(url: str, *args: object, **kwargs: object) -> object:
            if not url.startswith("data:"):
                raise ValueError(f"the report renderer fetches nothing but embedded data: refused {url[:80]}")
            return default_url_fetcher(url, *args, **kwargs)

        return fetch


def write(
    report: Report,
    out: Path,
    formats: list[str],
    templates: Path | None = None,
    settings: ReportSettings | None = None,
) -> list[Path]:
    """Write the report in the requested formats (html, pdf, csv: the complete per-probe table the report
    summarises, which the report then names) into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    table = out / probes_csv_name(report)
    html = render_html(report, templates, settings, table.name if "csv" in formats else None)
    written = []
    stem = f"audit-{report.suite.id}-{report.run_id}"
    if "html" in formats:
        path = out / f"{stem}.html"
        path.write_text(html, encoding="utf-8")
        written.append(path)
    if "pdf" in formats:
        path = out / f"{stem}.pdf"
        write_pdf(html, path)
        written.append(path)
    if "csv" in formats:
        write_probes_csv(report, table)
        written.append(table)
    return written
