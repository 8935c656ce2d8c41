"""The local lake lists a folder that other writers are emptying, as S3 would: no error."""

from __future__ import annotations

import threading
from pathlib import Path

from ecom_pipeline.lake.storage import LocalLake


def test_listing_while_another_client_deletes_never_fails(tmp_path: Path) -> None:
    lake = LocalLake(str(tmp_path / "lake"))
    keys = [f"_locks/gold/{n:012d}.json" for n in range(400)]
    for key in keys:
        lake.write_bytes(key, b"{}")
    other = LocalLake(str(tmp_path / "lake"))
    deleter = threading.Thread(target=lambda: [other.delete([key]) for key in keys])
    deleter.start()
    listings = []
    while deleter.is_alive():
        listings.append({o.key for o in lake.list("_locks/gold/")})  # raised before the fix
    deleter.join()
    assert all(listing <= set(keys) for listing in listings)
    assert lake.list("_locks/gold/") == []
