"""The archive's tables: the Parquet schema of each, its format version, and the DuckDB view that reads it."""

from __future__ import annotations

import pyarrow as pa

FORMAT_VERSION = 2  # 2: the manifest and run.parquet are sealed in the ledger too
_META = {b"auditor.format_version": str(FORMAT_VERSION).encode()}

PARAMS = pa.struct(
    [("temperature", pa.float64()), ("top_p", pa.float64()), ("max_tokens", pa.int64()), ("seed", pa.int64())]
)
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

RESPONSES = pa.schema(
    [
        ("run_id", pa.string()),
        ("item_id", pa.string()),
        ("request_hash", pa.string()),
        ("target", pa.string()),
        ("challenge_id", pa.string()),
        ("probe_id", pa.string()),
        ("attack", pa.string()),
        ("category", pa.string()),
        ("variant", pa.int32()),
        ("variables", pa.string()),
        ("sample", pa.int32()),
        ("messages", MESSAGES),
        ("params", PARAMS),
        ("content", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("latency_s", pa.float64()),
        ("returned_model", pa.string()),
        ("system_fingerprint", pa.string()),
        ("error_class", pa.string()),
        ("error_message", pa.string()),
        ("attempts", pa.int32()),
        ("cached", pa.bool_()),
        ("started_at", pa.string()),
    ],
    metadata=_META,
)

GRADES = pa.schema(
    [
        ("run_id", pa.string()),
        ("item_id", pa.string()),
        ("target", pa.string()),
        ("challenge_id", pa.string()),
        ("probe_id", pa.string()),
        ("attack", pa.string()),
        ("category", pa.string()),
        ("variant", pa.int32()),
        ("sample", pa.int32()),
        ("criterion", pa.string()),
        ("means", pa.string()),
        ("outcome", pa.string()),
        ("grader", pa.string()),
        ("judge", pa.string()),
        ("evidence", pa.string()),
    ],
    metadata=_META,
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("status", pa.string()),
        ("suite_id", pa.string()),
        ("suite_version", pa.string()),
        ("suite_sha256", pa.string()),
        ("targets", pa.list_(pa.string())),
        ("planned_items", pa.int64()),
        ("started_at", pa.string()),
        ("finished_at", pa.string()),
        ("label", pa.string()),
    ],
    metadata=_META,
)


CALIBRATIONS = pa.schema(
    [
        ("calibration_id", pa.string()),
        ("created_at", pa.string()),
        ("grader", pa.string()),
        ("grader_key", pa.string()),
        ("identity", pa.string()),
        ("judge_models", pa.string()),
        ("measures", pa.string()),
        ("set_path", pa.string()),
        ("set_format", pa.string()),
        ("set_sha256", pa.string()),
        ("n", pa.int64()),
        ("groups", pa.int64()),
        ("undecided", pa.int64()),
        ("tp", pa.int64()),
        ("fn", pa.int64()),
        ("fp", pa.int64()),
        ("tn", pa.int64()),
        ("se_x", pa.float64()),
        ("se_n", pa.float64()),
        ("sp_x", pa.float64()),
        ("sp_n", pa.float64()),
        *[
            (f"{name}{end}", pa.float64())
            for name in ("agreement", "sensitivity", "specificity", "precision", "kappa")
            for end in ("", "_low", "_high")
        ],
    ],
    metadata=_META,
)

LABELLED_GRADES = pa.schema(
    [
        ("calibration_id", pa.string()),
        ("item_id", pa.string()),
        ("group", pa.string()),
        ("label", pa.string()),
        ("outcome", pa.string()),
        ("evidence", pa.string()),
    ],
    metadata=_META,
)

REVIEWS = pa.schema(
    [
        ("run_id", pa.string()),
        ("item_id", pa.string()),
        ("label", pa.string()),
        ("note", pa.string()),
        ("reviewer", pa.string()),
        ("reviewed_at", pa.string()),
        ("source_sha256", pa.string()),
    ],
    metadata=_META,
)


VIEWS = (
    ("runs", "runs/*/run.parquet", RUNS),
    ("responses", "runs/*/responses/part-*.parquet", RESPONSES),
    ("judgements", "runs/*/judgements/part-*.parquet", RESPONSES),
    ("adaptive", "runs/*/adaptive/part-*.parquet", RESPONSES),
    ("grades", "runs/*/grades.parquet", GRADES),
    ("reviews", "runs/*/reviews/review-*.parquet", REVIEWS),
    ("calibrations", "calibrations/*/summary.parquet", CALIBRATIONS),
    ("labelled_grades", "calibrations/*/items.parquet", LABELLED_GRADES),
)
