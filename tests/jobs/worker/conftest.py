"""Helpers of the worker tests: an emulator over HTTP that logs every request, worker subprocesses, configs, polling.

- ``serve(app, delay=0)`` -> ``Served``: the app on loopback behind ``RequestLog`` (each request's start,
  end, webhook code and method; ``.delay`` seconds added to every reply, changeable while it runs;
  ``.hold(code, after=n)`` keeps that code's requests after the n-th waiting until ``.release(code)``);
  ``.webhook(code)`` is a webhook URL for another code (``app.add_webhook``), so each worker can have its own.
- ``write_config(folder, name, webhook, db_url, **schedule)``: a portal's config; the webhook goes to a file.
- ``start_worker(*args)`` -> ``WorkerProcess``: ``b24sync worker --log-format json ...`` in a subprocess;
  ``.events()`` its JSON log lines, ``.wait_for(pred)``, ``.stop()`` (SIGTERM, the exit code), ``.kill()``.
- ``eventually(check, what)``: poll until ``check()`` is truthy (a guard against hanging, not a timed assert).
- ``runs(engine)``: the run log grouped by run: job(s), worker, start, end, status per entity.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connector.emulator.app import EmulatorApp
from connector.emulator.server import EmulatorServer
from mappings.tables import b24sync_run
from tests.jobs.sync.conftest import assert_mirror, client_of, count, rows  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parents[3]
PATIENCE = 90.0  # seconds a poll waits before it gives up (a hung worker fails the test instead of hanging it)


@dataclass
class Request:
    """One request the emulator served: when it began and ended, the webhook code that sent it, the method."""

    start: float
    end: float
    code: str
    method: str


class RequestLog:
    """An ``EmulatorApp`` as the server sees it, logging every ``/rest/`` request and delaying its reply."""

    def __init__(self, app: EmulatorApp, delay: float = 0.0):
        self._app = app
        self.delay = delay
        self.begun = 0  # requests received so far, answered or not
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._gates: dict[str, tuple[int, threading.Event]] = {}
        self._seen: dict[str, int] = {}

    def hold(self, code: str, after: int = 0) -> None:
        """Requests with ``code`` after its first ``after`` ones wait (at most PATIENCE) until ``release(code)``."""
        with self._lock:
            self._gates[code] = (after, threading.Event())

    def release(self, code: str) -> None:
        """Let the held requests of ``code`` go on."""
        with self._lock:
            gate = self._gates.pop(code, None)
        if gate is not None:
            gate[1].set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    def handle(self, request: Any) -> Any:
        """Answer through the app (after ``delay``) and remember the request."""
        began = time.time()
        parts = [p for p in request.path.split("/") if p]
        code = parts[2] if parts[:1] == ["rest"] and len(parts) >= 4 else ""
        with self._lock:
            self.begun += 1
            number = self._seen[code] = self._seen.get(code, 0) + 1
            gate = self._gates.get(code)
        if gate is not None and number > gate[0]:
            gate[1].wait(PATIENCE)
        if self.delay:
            time.sleep(self.delay)
        reply = self._app.handle(request)
        if code:
            with self._lock:
                self.requests.append(Request(began, time.time(), code, parts[3].removesuffix(".json")))
        return reply

    def by(self, code: str) -> list[Request]:
        """The requests sent with one webhook code."""
        with self._lock:
            return [r for r in self.requests if r.code == code]


@dataclass
class Served:
    """A running emulator: its app, the request log and the server."""

    app: EmulatorApp
    log: RequestLog
    server: EmulatorServer

    @property
    def url(self) -> str:
        """The webhook URL of the app's first code."""
        return self.server.url

    def webhook(self, code: str) -> str:
        """A webhook URL for ``code`` (accepted from now on)."""
        self.app.add_webhook(code)
        return f"{self.server.base_url}/rest/1/{code}/"


@pytest.fixture
def serve() -> Any:
    """``serve(app, delay=0) -> Served``; every server is stopped after the test."""
    started: list[EmulatorServer] = []

    def start(app: EmulatorApp, delay: float = 0.0) -> Served:
        log = RequestLog(app, delay)
        server = EmulatorServer(log, secret=next(iter(app.webhooks))).start()  # type: ignore[arg-type]
        started.append(server)
        return Served(app, log, server)

    yield start
    for server in started:
        server.stop()


def write_config(folder: Path, name: str, webhook: str, db_url: str, **schedule: Any) -> Path:
    """``folder/name.toml`` for one portal: the webhook in ``name.webhook`` beside it, the mirror, ``[schedule]``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.webhook").write_text(webhook + "\n", encoding="utf-8")
    lines = ["[portal]", 'webhook_env = ""', f'webhook_file = "{name}.webhook"', "", "[database]", f"url = {json.dumps(db_url)}",
             "", "[schedule]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in schedule.items()]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class WorkerProcess:
    """A ``b24sync worker`` subprocess with JSON logs in a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Everything it logged so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far."""
        found = []
        for line in self.text().splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def jobs(self, **match: Any) -> list[dict[str, Any]]:
        """Its job lines whose fields equal ``match`` (``status="ok"``, ``job="sync"``...)."""
        return [e for e in self.events() if e.get("event") == "job" and all(e.get(k) == v for k, v in match.items())]

    def wait_for(self, check: Any, what: str) -> Any:
        """Poll ``check(self)`` until truthy; fails (with the log) when the worker exits or PATIENCE runs out."""
        return eventually(lambda: check(self), what, alive=self)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)  # the worker prints every thread's stack: where it hangs
            time.sleep(1.0)
            self.process.kill()
            raise AssertionError(f"the worker did not exit after {signal.Signals(sig).name}:\n{self.text()[-6000:]}") from None

    def kill(self) -> None:
        """SIGKILL: no chance to commit or release anything."""
        self.process.kill()
        self.process.wait(timeout=PATIENCE)


@pytest.fixture
def start_worker(tmp_path: Path) -> Any:
    """``start_worker(*args, name=...) -> WorkerProcess``; leftovers are killed after the test."""
    started: list[WorkerProcess] = []

    def start(*args: str, name: str = "worker") -> WorkerProcess:
        log_path = tmp_path / f"{name}-{len(started)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("B24SYNC_")}
        env["PYTHONPATH"] = str(ROOT)
        argv = [sys.executable, "-m", "jobs.cli", "worker", "--log-format", "json", *args]
        with log_path.open("wb") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
        worker = WorkerProcess(process, log_path, argv)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.kill()


def eventually(check: Any, what: str, *, alive: WorkerProcess | None = None, patience: float = PATIENCE) -> Any:
    """Poll ``check()`` every 0.1 s until it returns something truthy."""
    deadline = time.monotonic() + patience
    while True:
        value = check()
        if value:
            return value
        if alive is not None and alive.process.poll() is not None:
            raise AssertionError(f"the worker exited ({alive.process.returncode}) before {what}:\n{alive.text()[-3000:]}")
        if time.monotonic() > deadline:
            log = f":\n{alive.text()[-3000:]}" if alive is not None else ""
            raise AssertionError(f"gave up waiting for {what}{log}")
        time.sleep(0.1)


@dataclass
class Run:
    """One run of the run log: its rows, grouped."""

    run_id: str
    jobs: set[str]
    worker: str | None
    started: Any
    finished: Any
    statuses: dict[str, str]
    fetched: dict[str, int]


def runs(engine: Any) -> list[Run]:
    """The run log grouped by run_id, oldest first."""
    found: dict[str, Run] = {}
    try:
        log = rows(engine, b24sync_run)
    except sa.exc.SQLAlchemyError:
        return []
    for row in sorted(log, key=lambda r: r["id"]):
        run = found.get(row["run_id"])
        if run is None:
            run = found[row["run_id"]] = Run(row["run_id"], set(), row["worker"], row["started_at"], row["finished_at"], {}, {})
        run.jobs.add(row["job"])
        run.started = min(run.started, row["started_at"])
        if row["finished_at"] is not None:
            run.finished = max(run.finished or row["finished_at"], row["finished_at"])
        if row["job"] == "sync" or row["job"] == "report":
            run.statuses[row["entity"]] = row["status"]
            run.fetched[row["entity"]] = row["fetched"]
    return list(found.values())


def table_count(engine: Any, table: Any) -> int:
    """Rows in a mirror table, 0 while it does not exist yet."""
    try:
        return count(engine, table)
    except sa.exc.SQLAlchemyError:
        return 0
