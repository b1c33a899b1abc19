"""The archive: run folders of Parquet tables read through DuckDB, sealed in a hash-chained ledger."""
