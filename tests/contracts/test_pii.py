"""The PII hash is HMAC-SHA256 of the UTF-8 text, whatever the key's length."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from ecom_pipeline.contracts.pii import hash_array, hash_value

# Keys shorter than, as long as and longer than SHA-256's 64-byte block (the last is hashed).
KEYS = st.sampled_from([b"", b"k", b"x" * 63, b"y" * 64, b"z" * 65, bytes(range(256)) * 2])


@given(key=KEYS, values=st.lists(st.none() | st.text(max_size=40), max_size=30))
def test_hash_array_is_hmac_sha256_of_each_value(key: bytes, values: list[str | None]) -> None:
    expected = [
        None if v is None else hmac.new(key, v.encode("utf-8"), hashlib.sha256).hexdigest()
        for v in values
    ]
    assert hash_array(key, pa.array(values, pa.string())).to_pylist() == expected
    assert [None if v is None else hash_value(key, v) for v in values] == expected


def test_chunks_and_repeats_hash_like_single_values() -> None:
    chunked = pa.chunked_array([["Ann", "Bob"], ["Ann", None, "Émile"]], pa.string())
    assert hash_array(b"key", chunked).to_pylist() == [
        hash_value(b"key", "Ann"),
        hash_value(b"key", "Bob"),
        hash_value(b"key", "Ann"),
        None,
        hash_value(b"key", "Émile"),
    ]
