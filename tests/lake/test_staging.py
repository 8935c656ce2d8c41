"""Scratch folders: removed when their run ends, and by the next run when their owner was killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa

from ecom_pipeline.lake.staging import remove_abandoned, scratch_folder, staging_area

# A process that takes a scratch folder, says where, and waits (to be killed, or to exit).
HOLDER = """
import sys
from ecom_pipeline.lake.staging import scratch_folder
with scratch_folder(sys.argv[1], "ecom-holder-") as root:
    print(root, flush=True)
    sys.stdin.readline()
"""


def start_holder(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    return holder, Path(holder.stdout.readline().strip())


def test_a_live_owners_folder_is_kept_and_a_killed_owners_folder_removed(tmp_path) -> None:
    alive, alive_root = start_holder(tmp_path)
    killed, killed_root = start_holder(tmp_path)
    (killed_root / "rows.arrows").write_bytes(b"x" * 1024)
    killed.kill()
    killed.wait()
    try:
        assert killed_root.exists()
        with scratch_folder(str(tmp_path), "ecom-next-") as mine:
            assert not killed_root.exists()
            assert alive_root.exists() and mine.exists()
            # Nor is a folder of this very process taken for abandoned.
            assert remove_abandoned(tmp_path) == []
        assert not mine.exists()
    finally:
        assert alive.stdin is not None
        alive.stdin.write("\n")
        alive.stdin.close()
        assert alive.wait(timeout=30) == 0
    assert not alive_root.exists()


def test_folders_that_are_not_scratch_folders_are_left_alone(tmp_path) -> None:
    other = tmp_path / "ecom-something-else"
    other.mkdir()
    (tmp_path / "unrelated").mkdir()
    assert remove_abandoned(tmp_path) == []
    assert other.exists()


def test_staged_rows_read_back_and_the_area_is_removed_on_error(tmp_path) -> None:
    schema = pa.schema([("n", pa.int64())])
    try:
        with staging_area(str(tmp_path), "run-1") as staging:
            staged = staging.write("orders", "00000", schema, [pa.table({"n": [1, 2]})] * 3)
            assert staged.num_rows == 6
            assert staged.read_all().column("n").to_pylist() == [1, 2] * 3
            kept = staging.write("payments", "00000", schema, [pa.table({"n": [3]})])
            staging.discard("orders")
            assert not staged.path.exists() and kept.read_all().num_rows == 1
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
