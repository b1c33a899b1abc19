"""Renders a report object to HTML with a strict Jinja2 environment, and the same HTML to PDF."""

from __future__ import annotations

from pathlib import Path

from auditor.errors import ConfigError, RenderError
from auditor.report.analyse import Report
from auditor.report.verdicts import pct
from auditor.resources import data_dir

TEMPLATE = "report.html.j2"


def _interval(pair: tuple[float, float]) -> str:
    return f"{pct(pair[0])}–{pct(pair[1])}"


def clip(text: str, limit: int) -> str:
    """Model text cut to `limit` characters with a visible marker; the archive keeps the whole reply."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [… {len(text) - limit:,} more characters cut here; the archive holds the full text]"


def _decision_class(decision: str) -> str:
    return {
        "approve": "ok",
        "approve with conditions": "warn",
        "insufficient evidence": "unknown",
        "reject": "bad",
    }.get(decision, "")


def environment(templates: Path | None) -> object:
    """A Jinja2 environment: autoescape on (model output is hostile), undefined names are errors."""
    import jinja2

    folder = templates or data_dir("report_templates")
    if not (folder / TEMPLATE).is_file():
        raise RenderError(f"{folder}: no {TEMPLATE} in the templates folder")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
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


def render_html(report: Report, templates: Path | None = None) -> str:
    """Render the report to one self-contained HTML document."""
    import jinja2

    env = environment(templates)
    folder = templates or data_dir("report_templates")
    css_path = folder / "report.css"
    css = css_path.read_text(encoding="utf-8") if css_path.is_file() else ""
    try:
        return str(env.get_template(TEMPLATE).render(report=report, css=css))  # type: ignore[attr-defined]
    except jinja2.TemplateError as exc:
        where = f"{getattr(exc, 'filename', None) or TEMPLATE}:{getattr(exc, 'lineno', '?')}"
        raise RenderError(f"{where}: template error: {exc}") from None


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


def write(report: Report, out: Path, formats: list[str], templates: Path | None = None) -> list[Path]:
    """Write the report in the requested formats into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    html = render_html(report, templates)
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
