"""An archive on object storage: `--archive s3://bucket/prefix`, or another fsspec URL (memory://, gcs:// ...).

The archive code works on files in a folder, so a command given a URL works on a local working copy of the archive
(in $XDG_CACHE_HOME/auditor/archives/HASH/archive) that this module keeps in step with the bucket:

- pull, before the command: every object under the prefix is mirrored into the copy, incrementally (an object whose
  size and ETag match the last sync, and whose local copy is untouched, is not fetched again). A sealed folder (a
  run, calibration or plan: a folder with a ledger.jsonl) that the copy holds further than the bucket is kept as it
  is, when the local ledger continues the bucket's and every object of the folder in the bucket is a version that
  ledger sealed: the writes of a command killed before it could upload them, uploaded by this one.
- push, every INTERVAL_S seconds in the background and when the command ends: per sealed folder, the longest prefix
  of its ledger whose files are in place locally, with those files. The order makes every state of the bucket one
  that the next command (or a reader) resolves exactly; no object store renames several objects at once:

    1. FOLDER/.auditor-push.json: the ledger about to be uploaded (SHA-256 and size) and the names it adds, replaces
       and removes;
    2. new files under their names, replaced ones as NAME.tmp (parts before the ledger);
    3. ledger.jsonl, whole (object stores have no append): from here on the push is committed;
    4. each NAME.tmp copied over NAME (the manifest, recorded last, copied last), then the .tmp objects, the files
       the ledger records as removed (compacted parts) and the marker deleted.

  A pull that finds a marker whose ledger is in the bucket finishes the push in the copy (the recorded NAME.tmp
  moved into place by the ledger's own crash recovery, removed files dropped); one whose ledger is not there drops
  the added names, so the folder is the one before the push. `connect` (auditor query) reads the bucket directly in
  DuckDB and applies the same rule, so a query running during a push sees one side of it, never both.

Credentials are never handled here: s3fs asks botocore, which reads the standard AWS chain (environment variables,
AWS_PROFILE and the config and credential files, instance roles; AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3 for
another endpoint). A URL carrying credentials or options is refused, since the command line is stored with a run.
One writer per sealed folder at a time (a second writer's push is refused, not overwritten): machines sending
one run together each write a shard folder of their own (auditor.shards), which `auditor finalize` joins.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from auditor.archive.objects import MARKER, cache_folder, connect, failure, open_fs, parse
from auditor.archive.sync import INTERVAL_S, WorkingCopy
from auditor.errors import AuditorError

__all__ = ["INTERVAL_S", "MARKER", "WorkingCopy", "connect", "open_fs", "parse", "refresh", "working_copy"]


def _rename(exc: AuditorError, local: Path, url: str) -> None:
    """Name the archive by its URL, not its working copy, in an error's message."""
    exc.args = tuple(a.replace(str(local), url) if isinstance(a, str) else a for a in exc.args)


_open: dict[Path, WorkingCopy] = {}  # the working copies this process's commands hold, by folder


def refresh(folder: Path) -> None:
    """Pull into `folder`, when it is an open working copy, what other machines have stored in its bucket since
    (the shard folders Ray tasks on other nodes pushed, say)."""
    copy = _open.get(folder)
    if copy is not None:
        try:
            copy.pull()
        except AuditorError:
            raise
        except Exception as exc:
            raise failure(exc, copy.url) from None


@contextlib.contextmanager
def working_copy(url: str) -> Iterator[Path]:
    """Pull the archive at `url` into its working copy, yield the copy's folder, and push what the command changed
    (in the background meanwhile, and at the end, also after a failure or Ctrl-C)."""
    fs, root = open_fs(url)
    folder = cache_folder(url)
    folder.mkdir(parents=True, exist_ok=True)
    held = _lock(folder)
    if held is None:  # another command is using the copy: work on a fresh one of our own
        folder = Path(tempfile.mkdtemp(prefix="busy-", dir=folder))
    copy = WorkingCopy(url, folder, fs, root)
    try:
        try:
            copy.pull()
        except AuditorError:
            raise
        except Exception as exc:
            raise failure(exc, url) from None
        copy.start()
        failed = True
        _open[copy.path] = copy
        try:
            yield copy.path
            failed = False
        except AuditorError as exc:
            _rename(exc, copy.path, url)
            raise
        finally:
            _open.pop(copy.path, None)
            copy.stop()
            try:
                copy.push(final=True)
            except Exception as exc:
                if not failed:
                    if isinstance(exc, AuditorError):
                        raise
                    error = failure(exc, url)
                    raise type(error)(
                        f"{error}; the stored results are kept in {copy.path} and uploaded by the next command "
                        "on this archive"
                    ) from None
    finally:
        if held is None:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            held.close()


def _lock(folder: Path) -> IO[str] | None:
    """An exclusive lock on the working copy for this process, or None when another process holds it."""
    handle = (folder / "lock").open("a")
    try:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no advisory locks here: one command at a time is up to the user
        return handle
    except OSError:
        handle.close()
        return None
    return handle
