"""Shared storage: a label store (SQLite or PostgreSQL) with one row per unique label."""

from matloop.store._backend import connect, is_database, is_postgres, redact, transaction
from matloop.store.labels import LabelStore, PushResult, content_hash, row_to_atoms

__all__ = [
    "LabelStore",
    "PushResult",
    "connect",
    "content_hash",
    "is_database",
    "is_postgres",
    "redact",
    "row_to_atoms",
    "transaction",
]
