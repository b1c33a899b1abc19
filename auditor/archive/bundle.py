"""Portable export bundles of a run: a deterministic tar.gz of the run folder and its reports, with bundle.json
listing every member's SHA-256 and size, optionally signed with Ed25519; and their verification without an archive.

Layout of a bundle (format auditor-bundle/1), unpacked it is an archive of one run:

    bundle.json                 run id, ledger head, tool version, created_at, and every member below
    bundle.sig                  Ed25519 signature over the exact bytes of bundle.json (when signed)
    bundle.pub                  the signer's public key, informative only: verify with a key you trust
    reports/audit-SUITE-RUN.*   the rendered reports (when exported with them)
    runs/RUN_ID/...             the run folder as stored: manifest, ledger, Parquet tables, acts ...
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditor import __version__
from auditor.archive.store import RunDir
from auditor.clock import now
from auditor.errors import ArchiveError, InputError, UsageError

FORMAT = "auditor-bundle/1"
BUNDLE_JSON = "bundle.json"
SIGNATURE = "bundle.sig"
PUBLIC_KEY = "bundle.pub"
OWN = (BUNDLE_JSON, SIGNATURE, PUBLIC_KEY)  # the bundle's own members, not listed in bundle.json
SUFFIXES = (".tar.gz", ".tgz")
MAX_OWN_BYTES = 64 << 20  # bundle.json of a run with a million parts stays well below


@dataclass(frozen=True)
class Member:
    """One file of a bundle as bundle.json lists it."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Exported:
    """What an export wrote."""

    path: Path
    run_id: str
    head: str
    members: tuple[Member, ...]
    reports: tuple[str, ...]
    rendered: bool  # the reports were rendered for the bundle, none being found
    fingerprint: str | None  # of the signing key, when signed
    sha256: str  # of the bundle file itself


@dataclass(frozen=True)
class BundleCheck:
    """What verifying a bundle found."""

    files: int
    run_id: str
    head: str
    signed: bool  # bundle.sig is present
    signer: str | None  # fingerprint of the given key the signature verified with
    problems: tuple[str, ...]


def is_bundle_path(name: str) -> bool:
    return name.endswith(SUFFIXES)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA256:<16 hex> over the key's SubjectPublicKeyInfo DER (`openssl pkey -pubin -outform DER | sha256sum`)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "SHA256:" + hashlib.sha256(der).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def new_key(out: Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key (PEM, PKCS8, mode 0600) to `out` and its public key beside it as
    NAME.pub.pem; never overwrite. Returns both paths."""
    public = out.with_name(out.name.removesuffix(".pem") + ".pub.pem")
    for path in (out, public):
        if path.exists():
            raise UsageError(f"{path}: already exists; keys are never overwritten (choose another --out)")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_new(out, private, 0o600)
    _write_new(public, public_pem(key.public_key()), 0o644)
    return out, public


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # whatever the umask
        f.write(data)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM file (as `auditor keygen` writes)."""
    data = _read_key(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InputError(f"{path}: the private key is encrypted; give an unencrypted PKCS8 PEM key") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{path}: not a PEM private key ({_first_line(exc)}); make one with auditor keygen") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: not an Ed25519 key ({type(key).__name__}); make one with auditor keygen")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (SubjectPublicKeyInfo, as `auditor keygen` writes KEY.pub.pem)."""
    data = _read_key(path)
    if b"PRIVATE KEY" in data:
        raise InputError(f"{path}: is a private key; give the public key (the .pub.pem file auditor keygen wrote)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InputError(f"{path}: not a PEM public key ({_first_line(exc)})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return key


def _read_key(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the key: {exc.strerror or exc}") from None
    if len(data) > 1 << 16:
        raise InputError(f"{path}: not a key file ({len(data):,} bytes)")
    return data


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def check_out(out: Path, force: bool) -> None:
    """Refuse an --out that verify would not recognise as a bundle, or one that exists (unless `force`)."""
    if not is_bundle_path(out.name):
        raise UsageError(f"{out}: a bundle's name must end in .tar.gz or .tgz (auditor verify recognises it so)")
    if out.is_dir() or (out.exists() and not force):
        raise UsageError(f"{out}: already exists; give --force to replace it")


def reports_in(folder: Path, run_id: str) -> list[Path]:
    """The files in `folder` (not below) whose name contains the run id, as `auditor report` names them."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if run_id in p.name and p.is_file() and not p.is_symlink())


def export(
    run: RunDir,
    out: Path,
    reports: Path | None = None,
    render: Callable[[Path], list[Path]] | None = None,
    key: Ed25519PrivateKey | None = None,
    force: bool = False,
) -> Exported:
    """Write a run, its reports in `reports` (rendered into a temporary folder by `render` when that holds none)
    and bundle.json, signed with `key` if given, as a deterministic tar.gz at `out` (atomically).

    Raises ArchiveError for a run that fails verification: a bundle carries only intact evidence.
    """
    check_out(out, force)
    run.require_intact(f"a bundle carries only intact evidence (auditor verify {run.run_id})")
    head, mtime = run.head(), _epoch(run.manifest().finished_at)
    files = [(f"runs/{run.run_id}/{p.relative_to(run.path).as_posix()}", p) for p in _run_files(run)]
    with tempfile.TemporaryDirectory(prefix="auditor-bundle-") as scratch:
        found = reports_in(reports, run.run_id) if reports is not None else []
        rendered = reports is not None and not found and render is not None
        if rendered and render is not None:
            found = sorted(render(Path(scratch)))
        files += [(f"reports/{p.name}", p) for p in found]
        members = tuple(Member(name, *_hash(path)) for name, path in sorted(files))
        manifest = {
            "format": FORMAT,
            "run_id": run.run_id,
            "ledger_head": head,
            "tool_version": __version__,
            "created_at": now(),
            "files": [{"path": m.path, "sha256": m.sha256, "size": m.size} for m in members],
        }
        text = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        own = [(BUNDLE_JSON, text)]
        if key is not None:
            own += [(SIGNATURE, key.sign(text)), (PUBLIC_KEY, public_pem(key.public_key()))]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        try:
            _write_tar(tmp, own, [(m, dict(files)[m.path]) for m in members], mtime)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    signer = fingerprint(key.public_key()) if key is not None else None
    digest = _hash(out)[0]
    names = tuple(m.path.removeprefix("reports/") for m in members if m.path.startswith("reports/"))
    return Exported(out, run.run_id, head, members, names, rendered, signer, digest)


def _run_files(run: RunDir) -> list[Path]:
    """Every file the run stored, but crash leftovers (*.tmp, never recorded); a link is refused."""
    found = []
    for path in sorted(run.path.rglob("*")):
        if path.is_symlink():
            raise ArchiveError(f"{path}: a symbolic link in the run folder; a bundle holds regular files only")
        if path.is_file() and not path.name.endswith(".tmp"):
            found.append(path)
    return found


def _epoch(stamp: str | None) -> int:
    """The run's finished time as the members' mtime (0 when unknown), so an export does not depend on when."""
    try:
        when = datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0
    return max(0, int(when.timestamp()))


def _hash(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(tmp: Path, own: list[tuple[str, bytes]], files: list[tuple[Member, Path]], mtime: int) -> None:
    """The tar.gz: bundle.json (and signature) first, then members in sorted order; fixed times and owners, and
    a gzip header without a name or time, so the same inputs give the same bytes."""
    with tmp.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in own:
                tar.addfile(_info(name, len(data), mtime), io.BytesIO(data))
            for member, path in files:
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != member.sha256:
                    raise ArchiveError(f"{path}: changed while it was being exported; export again")
                tar.addfile(_info(member.path, len(data), mtime), io.BytesIO(data))


@dataclass
class _Read:
    """What one pass over a bundle's members collected (mutable while reading, then judged)."""

    found: dict[str, tuple[str, int]]  # path -> (sha256, size) of every regular member
    own: dict[str, bytes]
    problems: list[str]


def verify(path: Path, key: Ed25519PublicKey | None = None) -> BundleCheck:
    """Check a bundle without any archive: every member listed in bundle.json present with its SHA-256 and size and
    nothing else; no unsafe member (absolute, '..', link, device); the run's own ledger chain and seal, on a copy
    unpacked into a temporary folder; its head equal to the one bundle.json records; and, given a public `key`,
    the signature over bundle.json made with it.

    Raises InputError for a file that is not a tar.gz or holds no bundle.json (not a bundle at all).
    """
    with tempfile.TemporaryDirectory(prefix="auditor-verify-") as scratch:
        read = _read(path, Path(scratch))
        if BUNDLE_JSON not in read.own:
            raise InputError(f"{path}: not an auditor bundle (no {BUNDLE_JSON}; made by auditor export?)")
        problems = read.problems
        text = read.own[BUNDLE_JSON]
        signature = read.own.get(SIGNATURE)
        signer = None
        if key is not None:
            if signature is None:
                problems.append(f"the bundle is not signed (no {SIGNATURE}) but a key was given")
            else:
                try:
                    key.verify(signature, text)
                    signer = fingerprint(key)
                except InvalidSignature:
                    problems.append(
                        f"{SIGNATURE} does not verify with the given key: {BUNDLE_JSON} was edited, "
                        "or another key signed it"
                    )
        listed, run_id, recorded = _listing(text, problems)
        for name, member in sorted(listed.items()):
            if name not in read.found:
                problems.append(f"{name} is listed in {BUNDLE_JSON} but missing")
            elif read.found[name] != (member.sha256, member.size):
                problems.append(f"{name} changed: its SHA-256 or size differs from {BUNDLE_JSON}")
        problems += [
            f"{name} is not listed in {BUNDLE_JSON}" for name in sorted(set(read.found) - set(listed) - set(OWN))
        ]
        head = ""
        if run_id:
            head = _check_run(Path(scratch) / "runs" / run_id, recorded, problems)
    return BundleCheck(len(listed), run_id, head, signature is not None, signer, tuple(problems))


def _read(path: Path, scratch: Path) -> _Read:
    """One streaming pass over the tar.gz: hash every regular member, keep the bundle's own members in memory and
    copy the run folder's files under `scratch` (by name checks here, never tarfile's extraction); refuse links,
    devices, absolute names and '..'."""
    read = _Read({}, {}, [])
    seen = 0
    try:
        tar = tarfile.open(path, mode="r|gz")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: not a tar.gz bundle ({_first_line(exc)})") from None
    with tar:
        try:
            for info in tar:
                seen += 1
                _member(tar, info, scratch, read)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            if not seen:
                raise InputError(f"{path}: not a tar.gz bundle ({_first_line(exc)})") from None
            read.problems.append(f"the archive is damaged after {seen} members ({_first_line(exc)})")
    return read


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo, scratch: Path, read: _Read) -> None:
    name = info.name
    parts = name.split("/")
    shown = name[:200]
    if name.startswith("/") or {"", ".", ".."} & set(parts) or "\\" in name:
        read.problems.append(f"member {shown} has an unsafe path (absolute, '..' or not plain): refused, not unpacked")
        return
    if info.isdir():
        return
    if not info.isreg():
        kind = "symbolic link" if info.issym() else "hard link" if info.islnk() else "device or special file"
        read.problems.append(f"member {shown} is a {kind}: refused, not unpacked")
        return
    if name in read.found:
        read.problems.append(f"member {shown} appears twice in the archive")
        return
    stream = tar.extractfile(info)
    if stream is None:  # pragma: no cover - a regular member always has content
        return
    digest, size = hashlib.sha256(), 0
    keep = bytearray() if name in OWN else None
    dest = scratch.joinpath(*parts) if parts[0] == "runs" else None
    sink = None
    if dest is not None:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            sink = dest.open("xb")
        except OSError:
            read.problems.append(f"member {shown} clashes with another member's path")
    try:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
            if keep is not None and size <= MAX_OWN_BYTES:
                keep += block
            if sink is not None:
                sink.write(block)
    finally:
        if sink is not None:
            sink.close()
    read.found[name] = (digest.hexdigest(), size)
    if keep is not None:
        if size > MAX_OWN_BYTES:
            read.problems.append(f"{name} is too large ({size:,} bytes)")
        else:
            read.own[name] = bytes(keep)


def _listing(text: bytes, problems: list[str]) -> tuple[dict[str, Member], str, str]:
    """The members, run id and ledger head bundle.json records; a damaged one is a problem, not an exception."""
    try:
        data: Any = json.loads(text)
        if data.get("format") != FORMAT:
            problems.append(f"{BUNDLE_JSON}: format {str(data.get('format'))[:40]!r} is not {FORMAT}")
            return {}, "", ""
        members = [Member(str(f["path"]), str(f["sha256"]), int(f["size"])) for f in data["files"]]
        run_id, head = str(data["run_id"]), str(data["ledger_head"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        problems.append(f"{BUNDLE_JSON} is not a bundle manifest ({type(exc).__name__}: {_first_line(exc)})")
        return {}, "", ""
    listed = {m.path: m for m in members if m.path not in OWN}
    if len(listed) != len(members):
        problems.append(f"{BUNDLE_JSON} lists a path twice or lists the bundle's own files")
    if not run_id or "/" in run_id or run_id in (".", "..") or "\\" in run_id:
        problems.append(f"{BUNDLE_JSON} names an unsafe run id {run_id[:80]!r}")
        return listed, "", head
    return listed, run_id, head


def _check_run(folder: Path, recorded: str, problems: list[str]) -> str:
    """Verify the unpacked run folder as `auditor verify` does in an archive; return its ledger head."""
    if not (folder / "manifest.json").is_file():
        problems.append(f"runs/{folder.name}/manifest.json is missing: no run to verify")
        return ""
    try:
        check = RunDir(folder).verify()
    except ArchiveError as exc:  # named inside the bundle, not in the temporary copy
        problems.append(f"run {folder.name}: {_first_line(exc).replace(str(folder.parent.parent) + '/', '')}")
        return ""
    problems += [f"run {folder.name}: {p}" for p in check.problems]
    if check.head != recorded:
        problems.append(
            f"the run's ledger head {check.head[:16]} is not the one {BUNDLE_JSON} records ({recorded[:16]})"
        )
    return check.head
