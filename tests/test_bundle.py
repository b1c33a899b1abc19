"""Export bundles: a real run packed, signed and verified without its archive; every kind of tampering caught;
unsafe tar members refused without unpacking them."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from conftest import MINI_SUITE, invoke, refuse_or_answer, write_targets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auditor.archive.bundle import load_private_key, public_pem
from auditor.run.serve import ChatServer

Files = dict[str, bytes]


@pytest.fixture(scope="module")
def made(tmp_path_factory: Any) -> dict[str, Any]:
    """A graded run of the mini suite, a key pair from keygen, and the run exported unsigned and signed."""
    tmp: Path = tmp_path_factory.mktemp("bundle")
    suite = tmp / "mini.json"
    suite.write_text(json.dumps(MINI_SUITE))
    archive = tmp / "audits"
    with ChatServer(refuse_or_answer, model_name="scripted-1") as model:
        targets = write_targets(tmp / "t.json", {"name": "scripted", "base_url": model.url, "model": "scripted-1"})
        ran = invoke("run", str(suite), "--targets", str(targets), "--archive", str(archive), "--quiet")
        assert ran.exit_code == 0, ran.output
    run_id = ran.stdout.strip().splitlines()[-1]
    keys = invoke("keygen", "--out", str(tmp / "key.pem"))
    assert keys.exit_code == 0, keys.output
    assert keys.stdout.splitlines()[:2] == [str(tmp / "key.pem"), str(tmp / "key.pub.pem")]
    reports = tmp / "reports"
    reports.mkdir()
    (reports / f"audit-mini-{run_id}.html").write_text("<html>the report</html>")
    (reports / "audit-mini-20000101T000000Z-000000.html").write_text("another run's report")
    plain, signed = tmp / "plain.tar.gz", tmp / "signed.tar.gz"
    for out, extra in ((plain, ()), (signed, ("--sign", str(tmp / "key.pem")))):
        result = invoke(
            "export", run_id, "--out", str(out), "--archive", str(archive), "--reports", str(reports), *extra
        )
        assert result.exit_code == 0, result.output
    return {"tmp": tmp, "archive": archive, "run": run_id, "plain": plain, "signed": signed, "reports": reports,
            "key": tmp / "key.pem", "pub": tmp / "key.pub.pem"}  # fmt: skip


def read(bundle: Path) -> Files:
    with tarfile.open(bundle, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}  # type: ignore[union-attr]


def write(path: Path, files: Files, extra: Callable[[tarfile.TarFile], None] | None = None) -> Path:
    """A tar.gz of `files` in order, as someone repacking a bundle by hand would make it."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tar)
    return path


def listing(files: Files) -> dict[str, Any]:
    return dict(json.loads(files["bundle.json"]))


def relist(files: Files, name: str) -> None:
    """Edit bundle.json so it records `name`'s new bytes: a consistent edit only a signature or the ledger catches."""
    data = listing(files)
    for entry in data["files"]:
        if entry["path"] == name:
            entry["sha256"], entry["size"] = hashlib.sha256(files[name]).hexdigest(), len(files[name])
    files["bundle.json"] = json.dumps(data, indent=2).encode()


def verify(bundle: Path, key: Path | None = None) -> Result:
    return invoke("verify", str(bundle), *(("--key", str(key)) if key else ()))


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(made: dict[str, Any]) -> None:
    assert made["key"].stat().st_mode & 0o777 == 0o600
    assert made["key"].read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert made["pub"].read_text().startswith("-----BEGIN PUBLIC KEY-----")
    again = invoke("keygen", "--out", str(made["key"]))
    assert again.exit_code == 2
    assert again.output == f"error: {made['key']}: already exists; keys are never overwritten (choose another --out)\n"


def test_a_signed_bundle_verifies_with_the_signers_key(made: dict[str, Any]) -> None:
    result = verify(made["signed"], made["pub"])
    assert result.exit_code == 0, result.output
    run_dir = made["archive"] / "runs" / made["run"]
    files = len([p for p in run_dir.rglob("*") if p.is_file()]) + 1  # and the report
    head = hashlib.sha256((run_dir / "ledger.jsonl").read_text().splitlines()[-1].encode()).hexdigest()
    der = load_private_key(made["key"]).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert result.stdout == (
        f"{made['signed']}: ok, {files} files, run {made['run']}, seal {head[:16]}, "
        f"signed by key SHA256:{hashlib.sha256(der).hexdigest()[:16]}\n"
    )


def test_without_a_key_the_signature_is_named_but_not_checked(made: dict[str, Any]) -> None:
    result = verify(made["signed"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(", signature present but not checked (give --key)")
    plain = verify(made["plain"])
    assert plain.exit_code == 0 and plain.stdout.strip().endswith(", unsigned")


def test_the_bundle_holds_the_run_folder_its_reports_and_a_listing(made: dict[str, Any]) -> None:
    run_id, run_dir = made["run"], made["archive"] / "runs" / made["run"]
    files = read(made["signed"])
    stored = sorted(f"runs/{run_id}/{p.relative_to(run_dir).as_posix()}" for p in run_dir.rglob("*") if p.is_file())
    assert list(files)[:3] == ["bundle.json", "bundle.sig", "bundle.pub"]
    assert list(files)[3:] == sorted([f"reports/audit-mini-{run_id}.html", *stored])
    data = listing(files)
    assert data["run_id"] == run_id and data["format"] == "auditor-bundle/1"
    assert (
        data["ledger_head"]
        == hashlib.sha256((run_dir / "ledger.jsonl").read_text().splitlines()[-1].encode()).hexdigest()
    )
    for entry in data["files"]:
        assert entry["sha256"] == hashlib.sha256(files[entry["path"]]).hexdigest()
        assert entry["size"] == len(files[entry["path"]])
    assert files["bundle.pub"] == public_pem(load_private_key(made["key"]).public_key())
    with tarfile.open(made["signed"], "r:gz") as tar:
        headers = {(m.uid, m.gid, m.uname, m.gname, m.mode, m.mtime) for m in tar.getmembers()}
    assert len(headers) == 1 and next(iter(headers))[:5] == (0, 0, "", "", 0o644)


def test_two_exports_of_a_run_differ_only_in_created_at(made: dict[str, Any], tmp_path: Path, monkeypatch: Any) -> None:
    again = tmp_path / "again.tar.gz"
    args = ("--archive", str(made["archive"]), "--reports", str(made["reports"]), "--sign", str(made["key"]))
    assert invoke("export", made["run"], "--out", str(again), *args).exit_code == 0
    first, second = read(made["signed"]), read(again)
    assert list(first) == list(second)
    assert {k: v for k, v in first.items() if k not in ("bundle.json", "bundle.sig")} == {
        k: v for k, v in second.items() if k not in ("bundle.json", "bundle.sig")
    }
    assert {**listing(first), "created_at": ""} == {**listing(second), "created_at": ""}
    monkeypatch.setattr("auditor.archive.bundle.now", lambda: "2026-01-01T00:00:00Z")
    for name in ("a.tar.gz", "b.tar.gz"):
        assert invoke("export", made["run"], "--out", str(tmp_path / name), *args).exit_code == 0
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def changed_member(run: str) -> Callable[[Files], None]:
    def change(files: Files) -> None:
        files[f"runs/{run}/suite.json"] = files[f"runs/{run}/suite.json"].replace(b"Mini suite", b"Nice suite")

    return change


# (what is done to the bundle, signed, verify with the key, the problems expected (RUN stands for the run id))
TAMPERING: list[tuple[str, bool, bool, list[str]]] = [
    ("change", False, False, ["runs/RUN/suite.json changed: its SHA-256 or size differs from bundle.json",
                              "run RUN: suite.json changed after it was recorded"]),
    ("remove", False, False, ["runs/RUN/grades.parquet is listed in bundle.json but missing",
                              "run RUN: grades.parquet is recorded but missing"]),
    ("add", False, False, ["runs/RUN/notes.txt is not listed in bundle.json",
                           "run RUN: notes.txt was never recorded"]),
    ("add-report", False, False, ["reports/extra.html is not listed in bundle.json"]),
    ("consistent", False, False, ["run RUN: suite.json changed after it was recorded"]),
    ("consistent", True, True, ["bundle.sig does not verify with the given key: bundle.json was edited, or another "
                                "key signed it", "run RUN: suite.json changed after it was recorded"]),
    ("other-key", True, True, ["bundle.sig does not verify with the given key: bundle.json was edited, or another "
                               "key signed it"]),
    ("head", False, False, ["the run's ledger head HEAD is not the one bundle.json records (0000000000000000)"]),
    ("unsigned", False, True, ["the bundle is not signed (no bundle.sig) but a key was given"]),
]  # fmt: skip


@pytest.mark.parametrize(("how", "signed", "with_key", "expected"), TAMPERING)
def test_tampering_is_caught(
    made: dict[str, Any], tmp_path: Path, how: str, signed: bool, with_key: bool, expected: list[str]
) -> None:
    run = made["run"]
    files = read(made["signed" if signed else "plain"])
    head = listing(files)["ledger_head"]
    if how in ("change", "consistent"):
        changed_member(run)(files)
        if how == "consistent":
            relist(files, f"runs/{run}/suite.json")
    elif how == "remove":
        del files[f"runs/{run}/grades.parquet"]
    elif how == "add":
        files[f"runs/{run}/notes.txt"] = b"added later"
    elif how == "add-report":
        files["reports/extra.html"] = b"<html>not the audit</html>"
    elif how == "other-key":
        other = Ed25519PrivateKey.generate()
        files["bundle.sig"], files["bundle.pub"] = other.sign(files["bundle.json"]), public_pem(other.public_key())
    elif how == "head":
        files["bundle.json"] = files["bundle.json"].replace(head.encode(), b"0" * 64)
    bundle = write(tmp_path / "tampered.tar.gz", files)
    result = verify(bundle, made["pub"] if with_key else None)
    assert result.exit_code == 1, result.output
    problems = [p.replace("RUN", run).replace("HEAD", head[:16]) for p in expected]
    assert result.stdout.splitlines() == [f"{bundle}: TAMPERED: {p}" for p in problems]
    assert result.stderr == "error: 1 of 1 bundles failed verification\n"


def symlink(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("runs/link")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tar.addfile(info)


def hardlink(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("runs/hard")
    info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    tar.addfile(info)


def device(tar: tarfile.TarFile) -> None:
    info = tarfile.TarInfo("runs/null")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    tar.addfile(info)


@pytest.mark.parametrize(
    ("name", "extra", "problem"),
    [
        ("../evil", None, "member ../evil has an unsafe path (absolute, '..' or not plain): refused, not unpacked"),
        (
            "runs/../../evil",
            None,
            "member runs/../../evil has an unsafe path (absolute, '..' or not plain): refused, not unpacked",
        ),
        ("/tmp/evil", None, "member /tmp/evil has an unsafe path (absolute, '..' or not plain): refused, not unpacked"),
        ("", symlink, "member runs/link is a symbolic link: refused, not unpacked"),
        ("", hardlink, "member runs/hard is a hard link: refused, not unpacked"),
        ("", device, "member runs/null is a device or special file: refused, not unpacked"),
    ],
)
def test_unsafe_members_are_refused_and_nothing_lands_outside_a_temporary_folder(
    made: dict[str, Any], tmp_path: Path, monkeypatch: Any, name: str, extra: Any, problem: str
) -> None:
    scratch, cwd = tmp_path / "scratch" / "deep", tmp_path / "cwd"
    scratch.mkdir(parents=True)
    cwd.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.chdir(cwd)
    files = read(made["plain"])
    if name:
        files[name] = b"written outside"
    bundle = write(tmp_path / "evil.tar.gz", files, extra)
    before = sorted(p for p in tmp_path.rglob("*"))
    result = verify(bundle)
    assert result.exit_code == 1, result.output
    assert f"{bundle}: TAMPERED: {problem}" in result.stdout.splitlines()
    assert sorted(p for p in tmp_path.rglob("*")) == before  # the temporary copy is gone, and nothing else appeared
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key", "not a PEM public key (Unable to load PEM file."),
        (b"PRIVATE", "is a private key; give the public key"),
    ],
)
def test_a_malformed_key_is_bad_input(made: dict[str, Any], tmp_path: Path, content: bytes, message: str) -> None:
    key = tmp_path / "bad.pem"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" if content == b"PRIVATE" else content)
    result = verify(made["signed"], key)
    assert result.exit_code == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: {key}: {message}")
    signing = invoke("export", made["run"], "--out", str(tmp_path / "b.tgz"), "--archive", str(made["archive"]),
                     "--sign", str(made["pub"]))  # fmt: skip
    assert signing.exit_code == 2 and len(signing.stderr.splitlines()) == 1
    assert signing.stderr.startswith(f"error: {made['pub']}: not a PEM private key")
    assert not (tmp_path / "b.tgz").exists()


def test_a_file_that_is_no_bundle_is_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_text("hello")
    result = verify(junk)
    assert (result.exit_code, result.stderr) == (2, f"error: {junk}: not a tar.gz bundle (not a gzip file)\n")
    other = write(tmp_path / "other.tgz", {"README": b"just a tarball"})
    result = verify(other)
    assert result.exit_code == 2
    assert result.stderr == f"error: {other}: not an auditor bundle (no bundle.json; made by auditor export?)\n"


def test_export_refuses_a_tampered_run(made: dict[str, Any], tmp_path: Path) -> None:
    archive = tmp_path / "audits"
    shutil.copytree(made["archive"], archive)
    suite = archive / "runs" / made["run"] / "suite.json"
    suite.write_text(suite.read_text().replace("Mini suite", "Nice suite"))
    out = tmp_path / "b.tar.gz"
    result = invoke("export", made["run"], "--out", str(out), "--archive", str(archive))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: run {made['run']} fails verification: suite.json changed after it was recorded; a bundle carries "
        f"only intact evidence (auditor verify {made['run']})\n"
    )
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_export_never_overwrites_unless_forced(made: dict[str, Any]) -> None:
    out = made["plain"]
    before = out.read_bytes()
    result = invoke("export", made["run"], "--out", str(out), "--archive", str(made["archive"]))
    assert (result.exit_code, result.stderr) == (2, f"error: {out}: already exists; give --force to replace it\n")
    assert out.read_bytes() == before
    wrong = invoke("export", made["run"], "--out", str(made["tmp"] / "b.zip"), "--archive", str(made["archive"]))
    assert wrong.exit_code == 2 and "must end in .tar.gz or .tgz" in wrong.stderr
    forced = invoke("export", made["run"], "--out", str(out), "--archive", str(made["archive"]), "--force",
                    "--reports", str(made["reports"]))  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert verify(out).exit_code == 0


def test_without_reports_found_they_are_rendered_into_the_bundle(made: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "b.tar.gz"
    args = ("--archive", str(made["archive"]), "--reports", str(tmp_path / "none-yet"))
    result = invoke("export", made["run"], "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    assert "reports: 3 (rendered for the bundle)" in result.stdout
    names = [n for n in read(out) if n.startswith("reports/")]
    stem = f"reports/audit-mini-{made['run']}"
    assert names == [f"{stem}-probes.csv", f"{stem}.html", f"{stem}.pdf"]  # the per-probe table the report names
    assert not (tmp_path / "none-yet").exists()


def test_an_unpacked_bundle_is_an_archive_and_archive_verify_is_unchanged(made: dict[str, Any], tmp_path: Path) -> None:
    with tarfile.open(made["signed"], "r:gz") as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    for archive in (made["archive"], tmp_path / "unpacked"):
        result = invoke("verify", made["run"], "--archive", str(archive))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{made['run']}: ok, ") and ", seal " in result.stdout
    assert invoke("verify", "--archive", str(made["archive"])).exit_code == 0
    keyed = invoke("verify", made["run"], "--archive", str(made["archive"]), "--key", str(made["pub"]))
    assert keyed.exit_code == 2 and "name a bundle" in keyed.stderr
    mixed = invoke("verify", made["run"], str(made["plain"]), "--archive", str(made["archive"]))
    assert mixed.exit_code == 0 and len(mixed.stdout.splitlines()) == 2
