"""PII pseudonymisation: a keyed hash (HMAC-SHA256, hex) that is stable across runs, so joins on
hashed names still work while the clear text never leaves bronze (SPEC §4)."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pyarrow.compute as pc

#: What an offending PII value is replaced with in quarantine reasons.
MASK = "***"


def hash_value(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_array(key: bytes, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Hash every non-null string; nulls stay null.

    Each distinct value is hashed once (names repeat a lot), from a keyed state prepared once.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    digests = []
    for value in encoded.dictionary.to_pylist():
        state = keyed.copy()
        state.update(value.encode("utf-8"))
        digests.append(state.hexdigest())
    return pc.take(pa.array(digests, pa.string()), encoded.indices)


def hash_columns(key: bytes, table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    """The table with each named column (if present) replaced by its keyed hash."""
    for name in columns:
        if name in table.column_names:
            index = table.column_names.index(name)
            table = table.set_column(index, name, hash_array(key, table.column(name)))
    return table


def mask(value: str) -> str:
    """The shape of a value with its content gone: letters become ``x``, digits ``9``, the rest
    stays (``ann@example.com`` → ``xxx@xxxxxxx.xxx``). For an offending value that may be PII
    but whose shape says what went wrong."""
    return "".join("x" if c.isalpha() else "9" if c.isdigit() else c for c in value)
