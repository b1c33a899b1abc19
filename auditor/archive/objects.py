"""Archives on object storage, the parts every command shares: the URL (checked: no credentials, no options), the
fsspec file system for it, one-line errors for what the store or its client raises, the small helpers of the sync
protocol (auditor.archive.remote describes it), and a DuckDB connection that reads the store directly (auditor query).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import IO, Any

from auditor.archive import ledger
from auditor.errors import AuditorError, ConfigError, UsageError

MARKER = ".auditor-push.json"  # a push in progress in this sealed folder (never part of the working copy)
STREAM_ABOVE = 32 << 20  # files larger than this are streamed to the store rather than read into memory
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def parse(value: str | Path) -> Path | str:
    """A folder for a plain path or a file:// URL, else the (checked, normalised) URL of an archive on storage."""
    if isinstance(value, Path):
        return value
    match = _SCHEME.match(value)
    if not match:
        return Path(value)
    scheme, rest = match.group(1).lower(), value[match.end() :]
    if scheme == "file":
        if not rest.startswith("/"):
            raise UsageError(f"{value}: a file:// archive names an absolute folder: file:///PATH")
        return Path(rest)
    if "@" in rest.split("/", 1)[0] or "?" in rest or "#" in rest:
        raise UsageError(
            f"{scheme}://...: credentials or options in the archive URL are refused (the command line is stored "
            "with each run); give them through the environment or the AWS configuration files"
        )
    rest = rest.rstrip("/")
    if not rest:
        raise UsageError(f"{value}: name a bucket, and optionally a prefix: {scheme}://BUCKET/PREFIX")
    return f"{scheme}://{rest}"


def cache_folder(url: str) -> Path:
    """Where the working copy of the archive at `url` is kept (and its sync state)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "auditor" / "archives" / hashlib.sha256(url.encode()).hexdigest()[:20]


def failure(exc: BaseException, url: str) -> AuditorError:
    """One line for what the store or its client library raised: exit 2 for a URL or bucket to fix, else 1."""
    names = {c.__name__ for c in type(exc).__mro__}
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    scheme = url.split("://", 1)[0]
    if isinstance(exc, ImportError):
        extra = _EXTRAS.get(scheme)
        if extra:
            return ConfigError(f"{url}: {scheme}:// archives need the '{extra}' extra: pip install 'auditor[{extra}]'")
        return ConfigError(f"{url}: no file system for {scheme}:// is installed ({text})")
    if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
        return ConfigError(
            f"{url}: no credentials for the object store ({text}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE (the standard AWS configuration chain; nothing is stored)"
        )
    if names & {"ProfileNotFound", "NoRegionError", "InvalidConfigError", "ConfigParseError"}:
        return ConfigError(f"{url}: the AWS configuration is incomplete: {text}")
    if "ParamValidationError" in names:
        detail = str(exc).splitlines()[1:2] or [text]
        return UsageError(f"{url}: not a valid bucket or object name: {detail[0].strip()}")
    if isinstance(exc, FileNotFoundError) and "bucket" in text.lower():
        return UsageError(f"{url}: the bucket does not exist (create it first, or check its name)")
    if isinstance(exc, PermissionError):
        return ConfigError(f"{url}: the object store refused access ({text}); check the credentials and bucket policy")
    if isinstance(exc, ValueError) and "protocol" in text.lower():
        return UsageError(f"{url}: unknown storage '{scheme}://' (use s3://BUCKET/PREFIX, or a folder)")
    if isinstance(exc, (ConnectionError, TimeoutError)) or names & {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ClientConnectorError",
        "ServerTimeoutError",
    }:
        return AuditorError(f"{url}: cannot reach the object store ({text}); check AWS_ENDPOINT_URL and the network")
    if isinstance(exc, ValueError):
        return UsageError(f"{url}: {text}")
    return AuditorError(f"{url}: the object store failed: {type(exc).__name__}: {text}")


def open_fs(url: str) -> tuple[Any, str]:
    """The fsspec file system for `url` and the archive's path in it (no request is made)."""
    scheme = url.split("://", 1)[0]
    options: dict[str, Any] = {"skip_instance_cache": True}  # credentials are read afresh by every command
    if scheme in ("s3", "s3a") and not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
        options["config_kwargs"] = {"connect_timeout": 10, "retries": {"max_attempts": 3, "mode": "standard"}}
    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url, **options)
    except Exception as exc:
        raise failure(exc, url) from None
    if scheme in ("s3", "s3a"):
        fs.retries = 2  # s3fs's own retries, over botocore's: an unreachable endpoint fails in seconds
    return fs, str(root).rstrip("/")


def version_of(info: dict[str, Any]) -> str:
    stamp = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("created") or info.get("LastModified")
    return f"{info.get('size')}:{stamp}"


def find_objects(fs: Any, root: str, under: str = "") -> dict[str, dict[str, Any]]:
    """Every object below root (or root/under), by its path relative to root."""
    where = f"{root}/{under}" if under else root
    fs.invalidate_cache(where)
    found = fs.find(where, detail=True)
    return {
        k[len(root) + 1 :]: v for k, v in found.items() if k.startswith(root + "/") and v.get("type") != "directory"
    }


def parent_of(rel: str) -> str:
    parent = PurePosixPath(rel).parent.as_posix()
    return "" if parent == "." else parent


def name_of(rel: str) -> str:
    return PurePosixPath(rel).name


def sealed_folders(rels: Any) -> set[str]:
    return {parent_of(r) for r in rels if name_of(r) == ledger.LEDGER}


def folder_of(rel: str, folders: set[str]) -> str:
    for parent in PurePosixPath(rel).parents:
        if parent.as_posix() in folders:
            return parent.as_posix()
    return ""


def ledger_entries(raw: bytes) -> list[tuple[str, str, bytes]]:
    """(file, sha256, line) of each complete ledger line, up to the first that is not an entry."""
    out = []
    for line in raw[: raw.rfind(b"\n") + 1].splitlines(keepends=True):
        try:
            entry = json.loads(line)
            out.append((str(entry["file"]), str(entry["sha256"]), line))
        except (ValueError, KeyError, TypeError):
            break
    return out


def inside(folder: Path, name: Any) -> Path | None:
    """folder/name, unless name (read from the store) is not a plain relative path."""
    if not isinstance(name, str) or not name or name.startswith("/") or ".." in name.split("/"):
        return None
    return folder / name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


Stat = tuple[int, int]


def stat_of(path: Path) -> Stat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def matches(rel: str, pattern: str) -> bool:
    import fnmatch

    parts, wanted = rel.split("/"), pattern.split("/")
    return len(parts) == len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def readable(fs: Any, root: str, listing: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The archive's files as a reader should see them (rel -> object path): a committed push's removed files left
    out and its replaced ones read from NAME.tmp while that still exists; an uncommitted push's new files left
    out; temporary objects and markers never."""
    files = {r: f"{root}/{r}" for r in listing}
    for rel in [r for r in listing if name_of(r) == MARKER]:
        folder = parent_of(rel)
        try:
            plan = json.loads(bytes(fs.cat_file(f"{root}/{rel}")))
            size = listing.get(f"{folder}/{ledger.LEDGER}", {}).get("size")
            committed = size == plan.get("ledger_size")
            for name in plan.get("remove" if committed else "add") or []:
                files.pop(f"{folder}/{name}", None)
            for name in plan.get("replace") or [] if committed else []:
                if f"{folder}/{name}.tmp" in listing:
                    files[f"{folder}/{name}"] = f"{root}/{folder}/{name}.tmp"
        except FileNotFoundError:
            continue  # the push finished meanwhile
        except (ValueError, AttributeError, TypeError):
            continue
    return {r: p for r, p in files.items() if not r.endswith(".tmp") and name_of(r) != MARKER}


def connect(url: str) -> Any:
    """A DuckDB connection reading the archive at `url` in the store directly, with the views of store.connect."""
    import duckdb

    from auditor.archive.tables import VIEWS

    fs, root = open_fs(url)
    try:
        files = readable(fs, root, find_objects(fs, root))
    except Exception as exc:
        raise failure(exc, url) from None
    if not files:
        raise UsageError(f"{url}: no archive here: nothing is stored under this prefix (run a suite first)")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    con = duckdb.connect(":memory:")
    con.register_filesystem(fs)
    for view, pattern, schema in VIEWS:
        paths = [f"{protocol}://{p.lstrip('/')}" for r, p in sorted(files.items()) if matches(r, pattern)]
        if paths:
            listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")
        else:
            con.register(f"_empty_{view}", schema.empty_table())
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM _empty_{view}")
    return con


def read_file(path: Path, digest: str | None) -> tuple[bytes | IO[bytes], str, Stat | None] | None:
    """A file's content (bytes, or an open file when large) with its SHA-256 and its stat before reading;
    None when it is missing or does not hold `digest`."""
    before = stat_of(path)
    if before is None:
        return None
    try:
        f = path.open("rb")
    except OSError:
        return None
    if before[0] <= STREAM_ABOVE:
        with f:
            data = f.read()
        found = sha256(data)
        content: bytes | IO[bytes] = data
    else:
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        f.seek(0)
        found, content = h.hexdigest(), f
    if digest is not None and found != digest:
        if not isinstance(content, bytes):
            content.close()
        return None
    return content, found, before if stat_of(path) == before else None


def close_read(got: tuple[bytes | IO[bytes], str, Stat | None]) -> None:
    if not isinstance(got[0], bytes):
        got[0].close()


def recover_copies(folder: Path) -> None:
    """Temporary copies pulled from the store: moved into place where the ledger records them, else removed."""
    if not any(folder.rglob("*.tmp")):
        return
    if (folder / ledger.LEDGER).is_file():
        ledger.recover(folder)
        return
    for tmp in folder.rglob("*.tmp"):
        tmp.unlink()
