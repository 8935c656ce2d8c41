"""Local scratch space for one run: validated rows wait on disk between stages.

A day can be ten times its usual size, so no stage holds a whole dataset in memory: the validate
step writes each file's valid rows here, block by block, as an Arrow IPC stream, and the silver
step reads them back one batch at a time. The folder is the run's own and is removed when the
run ends; nothing here is ever the only copy of anything (bronze is).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ecom_pipeline.errors import ScratchSpaceError
from ecom_pipeline.lake.failpoints import failpoint


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
    """A run's scratch folder. Rows are staged by group (one per dataset) and name, and a group
    is discarded as a whole once the stage that reads it is done."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(
        self, group: str, name: str, schema: pa.Schema, tables: Iterable[pa.Table]
    ) -> StagedRows:
        """Stage the tables' rows (each cast to ``schema``) as ``group/name``, replacing any
        earlier rows of that name (a retried task writes its file again)."""
        path = self.root / group / f"{name}.arrows"
        rows = 0
        with scratch_errors(self.root):
            path.parent.mkdir(parents=True, exist_ok=True)
            with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
                for table in tables:
                    writer.write_table(table.select(schema.names).cast(schema))
                    rows += table.num_rows
        failpoint(f"validate:{group}:staged")
        return StagedRows(path, schema, rows)

    def discard(self, group: str) -> None:
        """Remove every row staged in ``group``."""
        shutil.rmtree(self.root / group, ignore_errors=True)


@contextmanager
def scratch_errors(folder: Path) -> Iterator[None]:
    """Local disk errors in ``folder`` as a `ScratchSpaceError` that names it."""
    try:
        yield
    except ScratchSpaceError:
        raise
    except OSError as exc:
        raise ScratchSpaceError(folder, exc) from exc


@contextmanager
def staging_area(parent: str | None, run_id: str) -> Iterator[Staging]:
    """A fresh scratch folder for the run under ``parent`` (the system temp folder when None),
    removed on the way out whatever happens."""
    with scratch_folder(parent, f"ecom-{run_id[:12]}-") as root:
        yield Staging(root)


#: Held (flock) by the process that owns a scratch folder; the OS releases it when the process
#: ends in any way, SIGKILL and out-of-memory kills included.
OWNER_LOCK = ".owner.lock"


@contextmanager
def scratch_folder(parent: str | None, prefix: str) -> Iterator[Path]:
    """A new folder ``parent/prefix…`` owned by this process, removed on the way out.

    A process killed outright cannot remove its folder, so each new one first removes the
    ``ecom-*`` folders beside it whose owner is gone: a killed 10 M-order run leaves gigabytes.
    """
    base = Path(parent or tempfile.gettempdir())
    with scratch_errors(base):
        base.mkdir(parents=True, exist_ok=True)
        remove_abandoned(base)
        root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    # Locked before it gets its name, so no other process can see the folder unowned.
    handle = open(root / f"{OWNER_LOCK}.new", "w")  # noqa: SIM115 - held for the folder's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.rename(root / f"{OWNER_LOCK}.new", root / OWNER_LOCK)
        yield root
    finally:
        handle.close()
        shutil.rmtree(root, ignore_errors=True)


def remove_abandoned(base: Path) -> list[Path]:
    """Remove the scratch folders under ``base`` whose owning process has ended."""
    removed = []
    for folder in sorted(base.glob("ecom-*")):
        try:
            handle = open(folder / OWNER_LOCK)  # noqa: SIM115
        except OSError:  # being created right now, or not one of ours
            continue
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
