"""The view command: serves the archive's reports on 127.0.0.1 and opens one in the browser."""

from __future__ import annotations

from pathlib import Path

import click

from auditor.cli.console import printable
from auditor.cli.options import ARCHIVE_OPTION as ARCHIVE


@click.command()
@click.argument("run_id", default="latest", metavar="[RUN]")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 to serve on; 0 picks a free one.",
)
@click.option("--no-open", is_flag=True, help="Print the address only; do not open a browser.")
@ARCHIVE
def view(run_id: str, port: int, no_open: bool, archive: Path) -> None:
    """Serve the archive's reports on 127.0.0.1 and open RUN's (the latest by default) in the browser.

    The index at / lists every run; a report is rendered from the archive when it is opened and again after the
    run changes (no model is called). Only this machine can connect. Ctrl-C stops.

    \b
    auditor view
    auditor view 20261127T222652Z-4e6732 --port 8765
    auditor view --no-open --archive audits/
    """
    import webbrowser

    from auditor import pipeline
    from auditor.archive.store import Archive, RunDir
    from auditor.report import site
    from auditor.report.render import render_html

    run = Archive.existing(archive).run(run_id)

    def render(chosen: RunDir) -> str:
        return render_html(pipeline.report(archive, chosen))

    server = site.serve(archive, port, render)
    try:
        click.echo(f"serving {printable(str(archive))} at {server.url} (Ctrl-C to stop)")
        if not no_open and not webbrowser.open(f"{server.url}runs/{run.run_id}/"):
            click.echo("note: no browser could be opened; open the address above", err=True)
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()
