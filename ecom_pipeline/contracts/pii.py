"""PII pseudonymisation: a keyed hash (HMAC-SHA256, hex) that is stable across runs, so joins on
hashed names still work while the clear text never leaves bronze (SPEC §4)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

#: What an offending PII value is replaced with in quarantine reasons.
MASK = "***"


def hash_value(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hash_array(key: bytes, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Hash every non-null string; nulls stay null.

    Each distinct value is hashed once (names repeat a lot), by `_keyed_sha256`.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    digest = _keyed_sha256(key)
    digests = [digest(value.encode("utf-8")) for value in encoded.dictionary.to_pylist()]
    return pc.take(pa.array(digests, pa.string()), encoded.indices)


def _keyed_sha256(key: bytes) -> Callable[[bytes], str]:
    """`hash_value` as a function of the message, from the two SHA-256 states of the key's
    pads prepared once (RFC 2104). Half the cost of copying an ``hmac`` object per value, whose
    copy is Python code: 0.3 s of a 100 k-customer file's three PII columns."""
    block = hashlib.sha256().block_size
    padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    inner_pad = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
    outer_pad = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def digest(message: bytes) -> str:
        inner = inner_pad.copy()
        inner.update(message)
        outer = outer_pad.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    return digest


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
