"""The local working copy of an archive on object storage: pull it, push what a command wrote, in the order
auditor.archive.remote describes, and keep pushing in the background while the command runs."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from auditor.archive import ledger
from auditor.archive.objects import (
    MARKER,
    Stat,
    close_read,
    find_objects,
    folder_of,
    inside,
    ledger_entries,
    name_of,
    parent_of,
    read_file,
    recover_copies,
    sealed_folders,
    sha256,
    stat_of,
    version_of,
)
from auditor.errors import ArchiveError

INTERVAL_S = 2.0
STAGING = ".staging/"  # runs and shard folders being built, moved into place when whole: never uploaded as they are


class WorkingCopy:
    """The local copy of an archive on storage: pull, push, and a background pusher."""

    def __init__(self, url: str, folder: Path, fs: Any, root: str) -> None:
        self.url, self.folder, self.fs, self.root = url, folder, fs, root
        self.path = folder / "archive"
        self.lock = threading.Lock()
        self.remote: dict[str, tuple[str, str]] = {}  # what the store holds: rel -> (version, sha256 or "")
        self.synced: dict[str, Stat] = {}  # local files known to hold what the store holds: rel -> (size, mtime)
        self.known: dict[str, tuple[str, str]] = {}  # the store as of the last sync (from the state file)
        self.pushed: dict[str, Stat | None] = {}  # sealed folder -> its ledger's stat when wholly pushed
        self.discard: set[str] = set()  # objects an unfinished push added that its ledger never recorded
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._load()
        for left in folder.glob("incoming-*"):  # downloads a killed command left half done
            shutil.rmtree(left, ignore_errors=True)

    # --- state -----------------------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            data = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
            if data.get("url") == self.url:
                self.known = {k: (str(v[0]), str(v[1])) for k, v in data["remote"].items()}
                self.synced = {k: (int(v[0]), int(v[1])) for k, v in data["local"].items()}
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            self.known, self.synced = {}, {}

    def _save(self) -> None:
        data = {"url": self.url, "remote": self.remote, "local": self.synced}
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.folder / "state.json")

    def _key(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _local(self) -> dict[str, Stat]:
        out = {}
        if self.path.is_dir():
            for p in self.path.rglob("*"):
                stat = stat_of(p) if p.is_file() else None
                if stat is not None:
                    out[p.relative_to(self.path).as_posix()] = stat
        return out

    def _unchanged(self, rel: str, version: str, local: dict[str, Stat]) -> bool:
        known = self.known.get(rel)
        return known is not None and known[0] == version and rel in local and self.synced.get(rel) == local[rel]

    def _fetch(self, rel: str) -> bytes:
        return bytes(self.fs.cat_file(self._key(rel)))

    # --- pull ------------------------------------------------------------------------------------------------

    def pull(self) -> None:
        """Make the working copy hold what the store holds (keeping sealed folders the copy holds further)."""
        with self.lock:
            listing = {rel: version_of(info) for rel, info in find_objects(self.fs, self.root).items()}
            markers = {parent_of(r): r for r in listing if name_of(r) == MARKER}
            files = {r: v for r, v in listing.items() if name_of(r) != MARKER}
            local = self._local()
            folders = sealed_folders(files) | sealed_folders(local)
            groups: dict[str, tuple[dict[str, str], dict[str, Stat]]] = {}
            for rel, version in files.items():
                groups.setdefault(folder_of(rel, folders), ({}, {}))[0][rel] = version
            for rel, stat in local.items():
                groups.setdefault(folder_of(rel, folders), ({}, {}))[1][rel] = stat
            self.remote = {rel: (listing[rel], "") for rel in markers.values()}
            fetch, drop, mirrored = [], [], []
            for folder, (theirs, mine) in sorted(groups.items()):
                if folder and self._ahead(folder, theirs, mine):
                    continue
                mirrored.append(folder)
                for rel, version in theirs.items():
                    if self._unchanged(rel, version, mine):
                        self.remote[rel] = (version, self.known[rel][1])
                    else:
                        fetch.append(rel)
                drop += [rel for rel in mine if rel not in theirs]
            self._download(fetch, files)
            for rel in drop:
                (self.path / rel).unlink(missing_ok=True)
                self.synced.pop(rel, None)
            for folder in mirrored:
                if folder in markers:
                    self._finish_push(folder, markers[folder])
                elif folder:
                    recover_copies(self.path / folder)
            self.synced = {r: s for r, s in self.synced.items() if r in self.remote}
            self.folder.mkdir(parents=True, exist_ok=True)
            self._save()

    def _ahead(self, folder: str, theirs: dict[str, str], mine: dict[str, Stat]) -> bool:
        """Whether the copy's sealed folder continues what the store holds of it (kept, and pushed later)."""
        led = f"{folder}/{ledger.LEDGER}"
        if led not in mine:
            return False
        own = (self.path / led).read_bytes()
        if led not in theirs:  # a folder this copy created and never pushed, unless the store dropped it
            if any(k.startswith(folder + "/") for k in self.known):
                return False
            return True
        stored = own if self._unchanged(led, theirs[led], mine) else self._fetch(led)
        if stored == own or not own.startswith(stored):
            return False
        sealed: dict[str, set[str]] = {}
        for name, digest, _ in ledger_entries(own):
            sealed.setdefault(name, set()).add(digest)
        seen = {}
        for rel, version in theirs.items():
            name = rel[len(folder) + 1 :]
            if name == ledger.LEDGER or name.endswith(".tmp"):
                seen[rel] = (version, "")
                continue
            known = self.known.get(rel)
            digest = known[1] if known and known[0] == version else sha256(self._fetch(rel))
            if digest not in sealed.get(name, ()):
                return False
            seen[rel] = (version, digest)
        self.remote.update(seen)
        self.remote[led] = (theirs[led], sha256(stored))
        return True

    def _download(self, rels: list[str], versions: dict[str, str]) -> None:
        if not rels:
            return
        incoming = Path(tempfile.mkdtemp(prefix="incoming-", dir=self.folder))
        try:
            staged = [incoming / str(n) for n in range(len(rels))]
            self.fs.get([self._key(r) for r in rels], [str(p) for p in staged])
            for rel, path in zip(rels, staged):
                target = self.path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = ledger.file_hash(path)
                os.replace(path, target)
                self.remote[rel] = (versions[rel], digest)
                stat = stat_of(target)
                if stat is not None:
                    self.synced[rel] = stat
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def _finish_push(self, folder: str, marker: str) -> None:
        """Resolve a push another command left half done: finish it if its ledger is in, else drop what it added."""
        local = self.path / folder
        try:
            plan = json.loads(self._fetch(marker))
            led = local / ledger.LEDGER
            committed = led.is_file() and ledger.file_hash(led) == plan.get("ledger_sha256")
            latest = {name: digest for name, digest, _ in ledger_entries(led.read_bytes())} if led.is_file() else {}
            names = list(plan.get("remove" if committed else "add") or [])
        except (OSError, ValueError, AttributeError, TypeError):
            return  # an unreadable marker: left for the next push to clear; verification judges the folder
        for name in names:
            path = inside(local, name)
            if path is None or not path.is_file():
                continue
            if committed and latest.get(name) == ledger.REMOVED:
                path.unlink()
            elif not committed and latest.get(name) != ledger.file_hash(path):
                path.unlink()
                self.discard.add(f"{folder}/{name}")
        recover_copies(local)

    # --- push ------------------------------------------------------------------------------------------------

    def push(self, final: bool = True) -> None:
        """Upload what changed: every sealed folder whose ledger moved (all of them, and loose files, if final)."""
        with self.lock:
            if not self.path.is_dir():
                return
            found = (
                self.path.rglob(ledger.LEDGER)
                if final
                else [*self.path.glob(f"*/*/{ledger.LEDGER}"), *self.path.glob(f"shards/*/*/{ledger.LEDGER}")]
            )
            found_rel = (p.relative_to(self.path).as_posix() for p in found)
            folders = sorted(parent_of(rel) for rel in found_rel if not rel.startswith(STAGING))
            for folder in folders:
                stat = stat_of(self.path / folder / ledger.LEDGER)
                if not final and self.pushed.get(folder, ()) == stat:
                    continue
                if final and self.synced.get(f"{folder}/{ledger.LEDGER}") == stat and not self._stale(folder):
                    continue
                if self._push_folder(folder, final):
                    self.pushed[folder] = stat
            if final:
                self._push_loose(set(folders))
            self._save()

    def _stale(self, folder: str) -> list[str]:
        """Objects of the folder in the store that no push should leave: temporary copies, markers, and what an
        unfinished push added without recording it."""
        return [
            r
            for r in self.remote
            if r.startswith(folder + "/") and (r.endswith(".tmp") or name_of(r) == MARKER or r in self.discard)
        ]

    def _push_folder(self, folder: str, final: bool) -> bool:
        """Push one sealed folder; True when its whole ledger is now in the store."""
        local = self.path / folder
        names = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
        names = {n for n in names if not n.endswith(".tmp")}  # listed before the ledger is read: all recorded
        raw = (local / ledger.LEDGER).read_bytes()
        entries = ledger_entries(raw)
        count = len(entries)
        uploads: dict[str, tuple[bytes | IO[bytes], str, Stat | None]] = {}
        try:
            while True:  # the longest prefix of the ledger whose files are in place
                latest: dict[str, tuple[str, int]] = {}
                for i, (name, digest, _) in enumerate(entries[:count]):
                    latest[name] = (digest, i)
                bad = []
                for name, (digest, i) in latest.items():
                    if digest == ledger.REMOVED or name in uploads or self._digest(f"{folder}/{name}") == digest:
                        continue
                    got = read_file(local / name, digest) if name in names else None
                    if got is None:
                        bad.append(i)
                    else:
                        uploads[name] = got
                if not bad:
                    break
                count = min(bad)
                for name in [n for n in uploads if n not in latest or latest[n][1] >= count]:
                    close_read(uploads.pop(name))
            for name in [n for n, u in uploads.items() if latest.get(n, ("", 0))[0] != u[1]]:
                close_read(uploads.pop(name))
            if final:
                recorded = {name for name, _, _ in entries}
                for name in sorted(names - recorded - {ledger.LEDGER}):
                    got = read_file(local / name, None)
                    if got is not None and got[1] != self._digest(f"{folder}/{name}"):
                        uploads[name] = got
                    elif got is not None:
                        close_read(got)
            prefix = b"".join(line for _, _, line in entries[:count])
            self._commit(folder, uploads, prefix, latest, raw)
        finally:
            for got in uploads.values():
                close_read(got)
        whole = count == len(entries)
        stat = stat_of(local / ledger.LEDGER)
        if whole and stat is not None and stat[0] == len(prefix):  # the store holds the ledger as it is here
            self.synced[f"{folder}/{ledger.LEDGER}"] = stat
        return whole

    def _digest(self, rel: str) -> str:
        return self.remote.get(rel, ("", ""))[1]

    def _commit(
        self,
        folder: str,
        uploads: dict[str, tuple[bytes | IO[bytes], str, Stat | None]],
        prefix: bytes,
        latest: dict[str, tuple[str, int]],
        own: bytes,
    ) -> None:
        """The push protocol of the module docstring, for one folder (`own`: its whole local ledger)."""

        def rel(name: str) -> str:
            return f"{folder}/{name}"

        led = rel(ledger.LEDGER)
        self.discard -= {rel(n) for n in uploads}  # uploaded again now, with its record
        new_ledger = bool(prefix) and self._digest(led) != sha256(prefix)
        removals = sorted(n for n, (d, _) in latest.items() if d == ledger.REMOVED and rel(n) in self.remote)
        stale = self._stale(folder)
        if not (uploads or removals or new_ledger):
            if stale:
                self.fs.rm([self._key(r) for r in stale])
                for r in stale:
                    self.remote.pop(r, None)
                self.discard -= set(stale)
            return
        self._check_alone(folder, own)
        added = sorted(n for n in uploads if rel(n) not in self.remote)
        replaced = sorted((n for n in uploads if rel(n) in self.remote), key=lambda n: latest.get(n, ("", -1))[1])
        plan = {"ledger_sha256": sha256(prefix), "ledger_size": len(prefix), "add": added, "replace": replaced}
        plan["remove"] = removals
        self.fs.pipe_file(self._key(rel(MARKER)), json.dumps(plan, sort_keys=True).encode())
        self.remote[rel(MARKER)] = ("", "")
        small = {}
        for name in added + replaced:
            target = self._key(rel(name) + (".tmp" if name in replaced else ""))
            content = uploads[name][0]
            if isinstance(content, bytes):
                small[target] = content
            else:
                with self.fs.open(target, "wb") as out:
                    shutil.copyfileobj(content, out, 1 << 20)
        if small:
            self.fs.pipe(small)
        if new_ledger:
            self.fs.pipe_file(self._key(led), prefix)
        if replaced:  # the last recorded (the manifest) last
            sources = [self._key(rel(n) + ".tmp") for n in replaced]
            targets = [self._key(rel(n)) for n in replaced]
            if len(replaced) > 1:
                self.fs.copy(sources[:-1], targets[:-1])
            self.fs.copy(sources[-1], targets[-1])
        gone = [rel(n) + ".tmp" for n in replaced] + [rel(n) for n in removals] + stale
        gone = sorted(set(gone) - {rel(MARKER)})
        if gone:
            self.fs.rm([self._key(r) for r in gone])
        self.fs.rm(self._key(rel(MARKER)))
        versions = {r: version_of(info) for r, info in find_objects(self.fs, self.root, folder).items()}
        for r in [r for r in self.remote if r.startswith(folder + "/")]:
            if r not in versions:
                del self.remote[r]
                self.discard.discard(r)
        for r, version in versions.items():
            self.remote[r] = (version, self.remote.get(r, ("", ""))[1])
        for name, (_, digest, before) in uploads.items():
            self.remote[rel(name)] = (versions.get(rel(name), ""), digest)
            if before is not None:
                self.synced[rel(name)] = before
        if new_ledger:
            self.remote[led] = (versions.get(led, ""), sha256(prefix))
        for name in removals:
            self.synced.pop(rel(name), None)

    def _check_alone(self, folder: str, own: bytes) -> None:
        """Refuse to overwrite a ledger another writer changed in the store since this copy last saw it (one this
        copy uploaded itself, in a push that failed before it could note so, continues `own`)."""
        led = f"{folder}/{ledger.LEDGER}"
        self.fs.invalidate_cache(self._key(led))
        try:
            current: str | None = version_of(self.fs.info(self._key(led)))
        except FileNotFoundError:
            current = None
        if current == self.remote.get(led, (None, ""))[0]:
            return
        stored = self._fetch(led) if current is not None else b""
        if current is not None and own.startswith(stored):
            self.remote[led] = (current, sha256(stored))
        else:
            raise ArchiveError(
                f"{self.url}/{folder} was changed in the store by another writer meanwhile, so it is not "
                "overwritten: one writer per run (on several machines, send it in shards: auditor run --shard K/N)"
            )

    def _push_loose(self, folders: set[str]) -> None:
        """Files outside any sealed folder, uploaded as they are when they changed (never deleted remotely)."""
        small = {}
        for p in sorted(self.path.rglob("*")):
            rel = p.relative_to(self.path).as_posix()
            if not p.is_file() or rel.endswith(".tmp") or rel.startswith(STAGING) or folder_of(rel, folders):
                continue
            got = read_file(p, None)
            if got is None:
                continue
            if got[1] == self._digest(rel):
                close_read(got)
                continue
            if isinstance(got[0], bytes):
                small[rel] = got
            else:
                with got[0], self.fs.open(self._key(rel), "wb") as out:
                    shutil.copyfileobj(got[0], out, 1 << 20)
                self.remote[rel] = ("", got[1])
        if small:
            self.fs.pipe({self._key(r): g[0] for r, g in small.items()})
            for r, g in small.items():
                self.remote[r] = ("", g[1])
                if g[2] is not None:
                    self.synced[r] = g[2]

    # --- background ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Push every INTERVAL_S seconds until stop(), so the store follows a long command."""

        def loop() -> None:
            while not self._stop.wait(INTERVAL_S):
                try:
                    self.push(final=False)
                    self.error = None
                except Exception as exc:  # retried next round; the final push reports it
                    self.error = exc

        self._thread = threading.Thread(target=loop, name="auditor-archive-push", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
