"""Time as the archive writes it: UTC to the second, one format everywhere (manifests, rows, ledger lines, ids)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone


def now() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. 2026-11-27T20:13:01Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id() -> str:
    """A sortable, unique id for a run or a calibration: the UTC time and six random hex digits."""
    return f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
