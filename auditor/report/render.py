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
    return env


def _asset(name: str, templates: Path | None) -> str:
    for folder in (templates, data_dir("report_templates")):
        if folder is not None and (folder / name).is_file():
            return (folder / name).read_text(encoding="utf-8")
    return ""


def render_html(report: Report, templates: Path | None = None, settings: ReportSettings | None = None) -> str:
    """Render the report to one self-contained HTML document."""
    import jinja2

    settings = settings or ReportSettings()
    env = environment(templates)
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
    """Write the report in the requested formats into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    html = render_html(report, templates, settings)
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
    return written
