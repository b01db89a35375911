"""A `provision apply` process killed mid-apply leaves a portal from which the next apply converges.

The emulator delays each reply (latency model on), the test watches its write counter and kills the
apply process with SIGKILL once the wanted number of writes has happened, then runs apply again.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobs import provision as pv
from mappings.loader import load_config, parse_config
from tests.jobs.provision.conftest import EXAMPLE, writes

LATENCY = 5.0  # each reply waits 5 x (modelled cost + 20 ms round trip): >= 0.1 s between requests


def apply_command(config: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "provision", "apply", "--config", str(config), "--yes", *flags]


def kill_after(server: Any, command: list[str], cwd: Path, wanted: int) -> None:
    """Start ``command`` and SIGKILL it as soon as the emulator has executed ``wanted`` writes."""
    env = {**os.environ, "B24SYNC_WEBHOOK": server.url}
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while writes(server) < wanted:
            assert proc.poll() is None, "apply ended before it could be interrupted: " + proc.stderr.read().decode()
            assert time.monotonic() < deadline, "apply made no progress"
            time.sleep(0.002)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def rerun(server: Any, command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "B24SYNC_WEBHOOK": server.url}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("wanted", [2, 15, 34], ids=["after-pipeline-created", "mid-stage-creation", "before-final-sorts"])
def test_killed_apply_converges_on_the_next_run(make_emulator: Any, tmp_path: Path, wanted: int, client_for: Any) -> None:
    server = make_emulator(latency=LATENCY)
    command = apply_command(EXAMPLE, "--allow-delete")
    kill_after(server, command, tmp_path, wanted)
    server.app.latency = 0.0
    config = load_config(EXAMPLE)
    client = client_for(server)
    halfway = pv.plan(config, client)
    assert writes(server) >= wanted and halfway.has_changes and not halfway.errors  # really interrupted

    finished = rerun(server, command, tmp_path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert not pv.plan(config, client).has_changes

    clean = make_emulator()
    clean_client = client_for(clean)
    pv.apply(clean_client, pv.plan(config, clean_client), allow_delete=True)
    assert pv.export(client) == pv.export(clean_client)
    assert len(server.portal.categories) == 2  # no pipeline created twice


def test_an_interrupted_pipeline_creation_finishes_without_allow_delete(make_emulator: Any, tmp_path: Path, client_for: Any) -> None:
    """Only adding a pipeline needs no --allow-delete; a kill right after the pipeline exists (with the
    portal's stock stages in it) must not make the next run ask for it."""
    server = make_emulator(latency=LATENCY)
    client = client_for(server)
    repeat = EXAMPLE.read_text(encoding="utf-8").split('[[pipelines]]\nkey = "repeat"')[1]
    text = pv.export(client) + '\n[[pipelines]]\nkey = "repeat"' + repeat
    config_file = tmp_path / "b24sync.toml"
    config_file.write_text(text, encoding="utf-8")
    command = apply_command(config_file)

    kill_after(server, command, tmp_path, 1)
    server.app.latency = 0.0
    created = [c for c in server.portal.categories.values() if c["id"]]
    assert [(c["originatorId"], c["originId"]) for c in created] == [("b24sync:new", "repeat")]
    plan = pv.plan(parse_config(text), client)
    assert plan.deletions() == [] and any(c.action == "delete" for c in plan.changes)

    finished = rerun(server, command, tmp_path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert not pv.plan(parse_config(text), client).has_changes
    assert [(c["originatorId"], c["originId"]) for c in server.portal.categories.values() if c["id"]] == [("b24sync", "repeat")]
