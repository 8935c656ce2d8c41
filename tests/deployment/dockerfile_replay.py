"""Read docker/Dockerfile and replay its COPY and pip install steps in a fresh virtualenv.

There is no Docker engine on these machines, so the image is never built. What building and
starting it would exercise of our code — the COPY sources exist, `pip install` of the project
with the pinned dependencies succeeds without dev extras, the CMD and the flows start — is
replayed here: the COPYs into a folder standing for WORKDIR, every ``RUN … pip install …``
verbatim through ``sh -c`` with a fresh venv's ``bin`` first on PATH.

The replay takes two to three minutes (about 150 wheels from the package index), most of it
waiting on the network, so conftest.py starts it in a background thread at the beginning of the
session and the test collects the result at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"
INSTALL_TIMEOUT = 900


@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str


def instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, argument = text.partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(argument.split())))
    return result


def arguments(keyword: str, path: Path = DOCKERFILE) -> list[str]:
    return [i.argument for i in instructions(path) if i.keyword == keyword]


def dockerfile_env(path: Path = DOCKERFILE) -> dict[str, str]:
    env: dict[str, str] = {}
    for argument in arguments("ENV", path):
        for item in shlex.split(argument):
            name, _, value = item.partition("=")
            env[name] = value
    return env


def volumes(path: Path = DOCKERFILE) -> list[str]:
    """The folders the Dockerfile declares as volumes (JSON or plain form)."""
    found: list[str] = []
    for argument in arguments("VOLUME", path):
        found += json.loads(argument) if argument.startswith("[") else argument.split()
    return found


def copies(path: Path = DOCKERFILE) -> list[tuple[list[str], str]]:
    """``(sources, destination)`` of each COPY (flags such as --chown dropped)."""
    result = []
    for argument in arguments("COPY", path):
        parts = [p for p in shlex.split(argument) if not p.startswith("--")]
        result.append((parts[:-1], parts[-1]))
    return result


#: Runs a command with every mount read-only but the folders given before ``--`` (and /proc,
#: /sys, /dev, which a container keeps), in a private mount namespace: what ECS's
#: ``readonlyRootFilesystem`` with the image's volumes gives the process.
_READ_ONLY_ROOT_SCRIPT = r"""
set -e
keep=""
while [ "$1" != "--" ]; do mount --bind "$1" "$1"; keep="$keep $1"; shift; done
shift
for mp in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  case " $keep " in *" $mp "*) continue;; esac
  mount -o remount,bind,ro "$mp"
done
exec "$@"
"""
_UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


def read_only_root_unavailable() -> str | None:
    """Why this machine cannot emulate a read-only root (no user namespaces), or None."""
    try:
        result = subprocess.run(
            [*_UNSHARE, "sh", "-c", "mount -o remount,bind,ro / && ! touch /.ro-probe"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare unavailable: {exc}"
    if result.returncode != 0:
        return f"cannot remount / read-only in a user namespace: {result.stderr.strip()}"
    return None


@dataclass
class Step:
    command: str
    returncode: int
    output: str
    seconds: float


@dataclass
class Replay:
    """What the replay did; ``error`` is set when it could not run at all."""

    workdir: Path
    venv: Path
    env: dict[str, str] = field(default_factory=dict)
    #: The replay's folders standing for the image's volumes (writable at run time).
    scratch: list[Path] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.returncode == 0 for s in self.steps)

    def report(self) -> str:
        lines = [f"replay error: {self.error}"] if self.error else []
        for step in self.steps:
            lines.append(f"$ {step.command}  → exit {step.returncode} in {step.seconds:.0f} s")
            if step.returncode != 0:
                lines.append(step.output[-6000:])
        return "\n".join(lines)

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the replayed image (venv first on PATH, cwd = WORKDIR)."""
        return subprocess.run(
            list(args),
            cwd=cwd or self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def run_read_only(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """`run` with a read-only root filesystem where only the image's volumes are writable
        (see `read_only_root_unavailable` for machines that cannot do it)."""
        writable = [str(folder) for folder in self.scratch]
        return subprocess.run(
            [*_UNSHARE, "sh", "-c", _READ_ONLY_ROOT_SCRIPT, "sh", *writable, "--", *args],
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def replay_install(root: Path) -> Replay:
    """COPY into ``root``/<WORKDIR>, create ``root``/venv, run each pip RUN line there."""
    (workdir_arg,) = arguments("WORKDIR")
    replay = Replay(workdir=root / "image" / workdir_arg.lstrip("/"), venv=root / "venv")
    try:
        for sources, destination in copies():
            for source in sources:
                target = replay.workdir / destination
                if destination.endswith("/") and not (PROJECT_ROOT / source).is_dir():
                    target = target / Path(source).name
                origin = PROJECT_ROOT / source
                target.parent.mkdir(parents=True, exist_ok=True)
                if origin.is_dir():
                    shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(origin, target)
        # A plain venv: `--system-site-packages` is deliberately not used.
        subprocess.run(
            [sys.executable, "-m", "venv", str(replay.venv)],
            check=True,
            timeout=120,
            capture_output=True,
        )
        # The image's volumes become folders of the replay; settings that point into them
        # (ECOM_SCRATCH_DIR, TMPDIR, PREFECT_HOME) are pointed at those folders.
        image_env = dockerfile_env()
        for volume in volumes():
            folder = root / "image" / volume.lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            replay.scratch.append(folder)
            for name, value in image_env.items():
                if value == volume or value.startswith(volume.rstrip("/") + "/"):
                    image_env[name] = str(folder) + value[len(volume.rstrip("/")) :]
        replay.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ECOM_"))},
            **image_env,
            "PATH": f"{replay.venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "VIRTUAL_ENV": str(replay.venv),
            "HOME": str(root / "home"),
        }
        for command in (run for run in arguments("RUN") if "pip install" in run):
            # Exactly the Dockerfile's command, minus compiling .pyc files (a minute of CPU
            # here, irrelevant to whether the install works).
            command = command.replace("pip install", "pip install --no-compile")
            started = time.monotonic()
            result = subprocess.run(
                ["sh", "-c", command],
                cwd=replay.workdir,
                env=replay.env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
            )
            replay.steps.append(
                Step(
                    command,
                    result.returncode,
                    result.stdout + result.stderr,
                    time.monotonic() - started,
                )
            )
            if result.returncode != 0:
                break
    except Exception as exc:  # reported by the test, with whatever ran before
        replay.error = f"{type(exc).__name__}: {exc}"
    return replay


class BackgroundReplay:
    """``replay_install`` in a daemon thread, started at once; ``result()`` waits for it."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._result: Replay | None = None
        self._thread = threading.Thread(target=self._run, name="dockerfile-replay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._result = replay_install(self._root)

    def result(self, timeout: float = INSTALL_TIMEOUT) -> Replay:
        self._thread.join(timeout)
        if self._result is None:
            raise TimeoutError(f"the Dockerfile replay did not finish within {timeout:.0f} s")
        return self._result


def cmd() -> list[str]:
    (argument,) = arguments("CMD")
    return json.loads(argument)
