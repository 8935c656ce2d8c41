"""Local scratch space for one run: validated rows wait on disk between stages.

A day can be ten times its usual size, so no stage holds a whole dataset in memory: the validate
step writes each file's valid rows here, block by block, as an Arrow IPC stream, and the silver
step reads them back one batch at a time. The folder is the run's own and is removed when the
run ends; nothing here is ever the only copy of anything (bronze is).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa


@dataclass(frozen=True)
class StagedRows:
    """Rows staged in one local Arrow IPC stream file."""

    path: Path
    schema: pa.Schema
    num_rows: int

    def to_reader(self) -> pa.RecordBatchReader:
        """The rows, a batch at a time (read from disk as they are asked for)."""
        return pa.ipc.open_stream(pa.OSFile(str(self.path)))

    def read_all(self) -> pa.Table:
        with self.to_reader() as reader:
            return reader.read_all()


class Staging:
    """A run's scratch folder; `write` stages rows under a name unique within the run."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, schema: pa.Schema, tables: Iterable[pa.Table]) -> StagedRows:
        """Stage the tables' rows (each cast to ``schema``) under ``name``, replacing any
        earlier rows of that name (a retried task writes its file again)."""
        path = self.root / f"{name}.arrows"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = 0
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
            for table in tables:
                writer.write_table(table.select(schema.names).cast(schema))
                rows += table.num_rows
        return StagedRows(path, schema, rows)


@contextmanager
def staging_area(parent: str | None, run_id: str) -> Iterator[Staging]:
    """A fresh scratch folder for the run under ``parent`` (the system temp folder when None),
    removed on the way out whatever happens."""
    root = Path(tempfile.mkdtemp(prefix=f"ecom-{run_id[:12]}-", dir=parent))
    try:
        yield Staging(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
