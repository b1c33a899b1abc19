"""Commands that carry a run out of the archive: export (a signed, portable bundle) and keygen (a signing key)."""

from __future__ import annotations

from pathlib import Path

import click

from auditor.cli.options import ARCHIVE_OPTION as ARCHIVE


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The bundle to write, ending in .tar.gz or .tgz.",
)
@click.option(
    "--reports",
    type=click.Path(file_okay=False, path_type=Path),
    help="A folder of rendered reports: its files naming the run id go in the bundle; with none there, the "
    "report is rendered (HTML and PDF) into the bundle.",
)
@click.option(
    "--sign",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An Ed25519 private key (PEM, PKCS8, unencrypted, as auditor keygen writes) to sign bundle.json with.",
)
@click.option("--force", is_flag=True, help="Replace an existing --out.")
@ARCHIVE
def export(run_id: str, out: Path, reports: Path | None, key_file: Path | None, force: bool, archive: Path) -> None:
    """Pack a run (every file of its folder) and its reports into a portable tar.gz, with bundle.json listing
    each member's SHA-256 and size, the run's ledger head and the tool version; a run that fails verification is
    refused. The same run and reports give the same members byte for byte; only bundle.json's created_at differs.

    With --sign, bundle.sig holds an Ed25519 signature over bundle.json, and bundle.pub the signer's public key
    for convenience only: whoever verifies must use a public key they obtained and trust themselves
    (auditor verify FILE --key KEY.pub.pem), never the one the bundle carries. The signature proves integrity
    and who signed, not when: keep the printed SHA-256 of the bundle in an outside record (ticket, email).

    \b
    auditor export latest --out audit.tar.gz
    auditor export latest --out audit.tar.gz --reports reports --sign auditor-key.pem
    auditor export 20261127T2226 --out dist/audit.tgz --archive /shared/audits --force
    """
    from auditor import pipeline
    from auditor.archive import bundle
    from auditor.archive.store import Archive

    bundle.check_out(out, force)
    key = bundle.load_private_key(key_file) if key_file else None
    run = Archive.existing(archive).run(run_id)

    def render(folder: Path) -> list[Path]:
        return pipeline.write_report(archive, run, folder, ["html", "pdf", "csv"])

    made = bundle.export(run, out, reports, render, key, force)
    click.echo(str(made.path))
    how = "rendered for the bundle" if made.rendered else f"from {reports}" if made.reports else "none"
    signed = f"signed by key {made.fingerprint}" if made.fingerprint else "unsigned"
    click.echo(f"run {made.run_id}, {len(made.members)} files, reports: {len(made.reports)} ({how}), {signed}")
    click.echo(f"seal {made.head[:16]}, bundle SHA-256 {made.sha256} (keep it in an outside record)")


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The private key to write (KEY.pem); the public key goes beside it as KEY.pub.pem.",
)
def keygen(out: Path) -> None:
    """Make an Ed25519 key pair to sign bundles with: the private key (PEM, PKCS8, file mode 0600) and the public
    key (SubjectPublicKeyInfo PEM) to hand to whoever verifies. Existing files are never overwritten.

    \b
    auditor keygen --out auditor-key.pem
    """
    from auditor.archive import bundle

    private, public = bundle.new_key(out)
    click.echo(str(private))
    click.echo(str(public))
    click.echo(f"fingerprint {bundle.fingerprint(bundle.load_public_key(public))}")
