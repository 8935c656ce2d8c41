"""Fixtures for the deployment tests: a real local Prefect server, CLI helpers, API helpers.

One ``prefect server start`` serves the whole session (a cold start takes about 20 s here).
Everything talks to it the way operators do: the ``prefect`` CLI in subprocesses (deploy, work
pools, workers) and the REST API over HTTP. Every subprocess started here is stopped at the end,
also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from .dockerfile_replay import BackgroundReplay

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The slow Dockerfile replay (see dockerfile_replay.py): started in the background at the
#: start of the session, collected by this test, which is therefore moved to the end.
IMAGE_INSTALL_TEST = "test_image_install_and_start_commands_in_a_fresh_venv"
VENV_BIN = Path(sys.executable).parent
PREFECT = str(VENV_BIN / "prefect")
SERVER_START_TIMEOUT = 120.0
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
#: How long an API call keeps trying while the server answers 503 or times out.
BUSY_SERVER_PATIENCE = 180.0
BUSY_STATUSES = {502, 503, 504}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_prefect_env(prefect_home: Path) -> dict[str, str]:
    """The environment of a Prefect process of these tests: isolated home, no telemetry.

    Inherited ``PREFECT_*`` and ``ECOM_*`` settings are dropped so that a developer's profile
    or .env values cannot leak into (or redirect) the processes under test.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ECOM_", "AWS_"))}
    env.update(
        {
            "PREFECT_HOME": str(prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_CLI_PROMPT": "false",
            # Rich would wrap long lines at 80 columns in captured output.
            "COLUMNS": "200",
            # Dummy AWS identity: nothing here may ever reach real AWS.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    return env


@dataclass
class ManagedProcess:
    """A subprocess in its own session, with its output in a file; stopped on exit."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def output(self, tail: int = 6000) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return text[-tail:]

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group it leads (it may have children), then SIGKILL."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def start_process(
    name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path, cwd: Path = PROJECT_ROOT
) -> ManagedProcess:
    log_path = log_dir / f"{name}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() reaches its children too
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


@dataclass
class PrefectServer:
    """A running ``prefect server start`` and how to reach it."""

    api_url: str
    home: Path
    process: ManagedProcess
    client_env: dict[str, str] = field(default_factory=dict)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))

    # -- REST helpers ------------------------------------------------------------------------
    def request(self, method: str, path: str, payload: Any = None) -> httpx.Response:
        """One API call, retried while the server is busy.

        The SQLite-backed server answers 503 or not at all for a while when a flow run's
        fan-out holds its database (seen in CI on a loaded 2-core machine). Every call made
        here is idempotent (reads, filters, deletes, and run creation with an idempotency
        key), so trying again cannot double anything.
        """
        deadline = time.monotonic() + BUSY_SERVER_PATIENCE
        pause = 1.0
        while True:
            try:
                response = self.http.request(
                    method,
                    f"{self.api_url}{path}",
                    json=payload if method in {"POST", "PATCH"} else None,
                )
                if response.status_code not in BUSY_STATUSES:
                    return response
                busy = f"HTTP {response.status_code}"
            except (httpx.TimeoutException, httpx.TransportError) as error:
                busy = type(error).__name__
            if time.monotonic() + pause > deadline:
                raise AssertionError(
                    f"{method} {self.api_url}{path}: server still busy ({busy}) after "
                    f"{BUSY_SERVER_PATIENCE:.0f} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 10.0)

    def get(self, path: str) -> Any:
        response = self.request("GET", path)
        _raise_with_body(response)
        return response.json() if response.content else None

    def post(self, path: str, payload: Any = None) -> Any:
        response = self.request("POST", path, payload or {})
        _raise_with_body(response)
        return response.json() if response.content else None

    def delete(self, path: str) -> None:
        response = self.request("DELETE", path)
        if response.status_code != 404:
            _raise_with_body(response)

    def delete_automations(self) -> None:
        """Remove every automation: the session's server outlives a test module, and an applied
        heartbeat or SLA automation would otherwise act on later modules' runs."""
        for automation in self.post("/automations/filter", {}):
            self.delete(f"/automations/{automation['id']}")

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        return self.get(f"/deployments/name/{flow}/{name}")

    def flow_runs(self, **filters: Any) -> list[dict[str, Any]]:
        return self.post("/flow_runs/filter", {"sort": "EXPECTED_START_TIME_ASC", **filters})

    def create_run(self, deployment_id: str, parameters: dict[str, Any]) -> dict[str, Any]:
        return self.post(
            f"/deployments/{deployment_id}/create_flow_run",
            {"parameters": parameters, "idempotency_key": uuid.uuid4().hex},
        )

    def wait_for_run(
        self, flow_run_id: str, timeout: float, watch: Sequence[ManagedProcess] = ()
    ) -> dict[str, Any]:
        """Poll a flow run until it is terminal; on timeout fail with the workers' output."""
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.get(f"/flow_runs/{flow_run_id}")
            if run["state_type"] in TERMINAL_STATES:
                return run
            for process in watch:
                if process.popen.poll() is not None:
                    pytest.fail(
                        f"{process.name} exited ({process.popen.returncode}) while flow run "
                        f"{flow_run_id} was {run['state_type']}:\n{process.output()}",
                        pytrace=False,
                    )
            time.sleep(1.0)
        logs = "\n\n".join(f"--- {p.name} ---\n{p.output()}" for p in watch)
        pytest.fail(
            f"flow run {run.get('name')} ({flow_run_id}) still {run.get('state_type')} after "
            f"{timeout:.0f} s\n{logs}",
            pytrace=False,
        )

    # -- CLI helper --------------------------------------------------------------------------
    def cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 180.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``prefect <args>`` against this server, from the project root."""
        result = subprocess.run(
            [PREFECT, *args],
            cwd=PROJECT_ROOT,
            env={**self.client_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"`prefect {' '.join(args)}` exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-6000:]}\nstderr:\n{result.stderr[-6000:]}",
                pytrace=False,
            )
        return result

    def ensure_pool(self, name: str, *create_args: str) -> None:
        """Create the work pool unless it exists (tests share the session's server)."""
        response = self.request("GET", f"/work_pools/{name}")
        if response.status_code == 200:
            return
        self.cli("work-pool", "create", name, *create_args)


def _raise_with_body(response: httpx.Response) -> None:
    if response.is_error:
        raise AssertionError(
            f"{response.request.method} {response.request.url} → HTTP {response.status_code}: "
            f"{response.text[:2000]}"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the Dockerfile replay test last, so that its background install overlaps the rest."""
    last = [item for item in items if item.name == IMAGE_INSTALL_TEST]
    if last:
        items[:] = [item for item in items if item.name != IMAGE_INSTALL_TEST] + last


@pytest.fixture(scope="session", autouse=True)
def dockerfile_replay(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> BackgroundReplay | None:
    """Starts replaying docker/Dockerfile's install in a fresh venv, in a background thread,
    when the test that checks it is selected (its pip install waits on the network for about
    two minutes: it overlaps the other tests instead of adding to them)."""
    if not any(item.name == IMAGE_INSTALL_TEST for item in request.session.items):
        return None
    return BackgroundReplay(tmp_path_factory.mktemp("dockerfile-replay"))


@contextlib.contextmanager
def fresh_prefect_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """A new PostgreSQL database for a Prefect server (its asyncpg URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_url).set(drivername="postgresql+asyncpg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def prefect_database(postgres_url: str) -> Iterator[str]:
    """The session's Prefect server database, on PostgreSQL.

    Not SQLite: when a run is killed, its last events arrive in a burst, and the SQLite-backed
    triggers service met "database is locked", retried four times and moved the events, the
    run's Crashed event among them, to its dead-letter queue: the crash alert never came.
    """
    with fresh_prefect_database(postgres_url, "prefect_test") as url:
        yield url


@pytest.fixture(scope="session")
def prefect_server(
    tmp_path_factory: pytest.TempPathFactory, prefect_database: str
) -> Iterator[PrefectServer]:
    """``prefect server start`` (PostgreSQL, all services incl. scheduler and triggers) on a
    free port, stopped at the end of the session."""
    root = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = quiet_prefect_env(root / "server-home")
    env.update(
        {
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_API_DATABASE_CONNECTION_URL": prefect_database,
        }
    )
    process = start_process(
        "prefect-server",
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env,
        root,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    client_home = root / "client-home"
    server = PrefectServer(
        api_url=api_url,
        home=client_home,
        process=process,
        client_env={**quiet_prefect_env(client_home), "PREFECT_API_URL": api_url},
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.popen.poll() is not None:
                pytest.fail(
                    f"prefect server exited ({process.popen.returncode}) during start-up:\n"
                    f"{process.output()}",
                    pytrace=False,
                )
            with contextlib.suppress(httpx.HTTPError):
                if server.http.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"prefect server not healthy after {SERVER_START_TIMEOUT:.0f} s:\n"
                    f"{process.output()}",
                    pytrace=False,
                )
            time.sleep(0.5)
        yield server
    finally:
        server.http.close()
        process.stop()


@pytest.fixture(scope="session")
def deploy_variant(
    prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., dict[str, dict[str, Any]]]:
    """Deploy a variant of the project's prefect.yaml (deployments/variants.py) with the CLI.

    Returns a function ``(variant, *deploy_args, env=…, **variant_kwargs)`` that writes the
    variant file and runs ``prefect deploy <deploy_args> --prefect-file <file>``; it returns
    the deployments now on the server by name.
    """
    from deployments import variants

    folder = tmp_path_factory.mktemp("prefect-variants")

    def deploy(
        variant: str,
        *deploy_args: str,
        env: Mapping[str, str] | None = None,
        **variant_kwargs: Any,
    ) -> dict[str, dict[str, Any]]:
        config = variants.load_prefect_file()
        if variant == "process-pool":
            derived = variants.process_pool_variant(config, **variant_kwargs)
        elif variant == "skip-image-build":
            derived = variants.skip_image_build_variant(config)
        else:
            raise ValueError(variant)
        path = variants.write_variant(derived, folder / f"prefect.{variant}.{time.time_ns()}.yaml")
        prefect_server.cli(
            "--no-prompt", "deploy", *deploy_args, "--prefect-file", str(path), env=env
        )
        names = [d["name"] for d in config["deployments"]]
        deployed = {}
        for name in names:
            response = prefect_server.http.get(
                f"{prefect_server.api_url}/deployments/name/{name}/{name}"
            )
            if response.status_code == 200:
                deployed[name] = response.json()
        return deployed

    return deploy
