"""Fixtures of the report tests: the hand-built scenario synced into a mirror once per database kind.

- ``scenario``: ``tests/jobs/report/scenario.py`` played on an emulator over HTTP and synced into a
  mirror (session scope, parametrized sqlite / postgresql like every mirror test); ``.engine``,
  ``.deals`` / ``.leads`` (scenario name -> portal ID), ``.now`` (the portal's clock at the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.jobs.conftest import BACKENDS, _Mirrors
from tests.jobs.report import scenario as sc


@pytest.fixture(scope="session", params=BACKENDS)
def scenario(request: Any, tmp_path_factory: pytest.TempPathFactory, pg_session_url: str | None) -> Iterator[sc.Scenario]:
    """The scenario's mirror, built once per test session and database kind."""
    mirrors = _Mirrors(str(request.param), tmp_path_factory.mktemp("report-mirror"), pg_session_url)
    try:
        _, engine = mirrors.make()
        built = sc.build(engine)
        built.stop()
        yield built
    finally:
        mirrors.close()
