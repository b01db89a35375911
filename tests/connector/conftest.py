"""Fixtures of the connector tests: transport wrappers that misbehave on purpose.

The fake clock, ``make_client``, ``client_for`` and ``mock_client`` are shared by the whole suite
(``tests/conftest.py``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any


class FailFirstCommand:
    """Wraps a transport: after the first request, the first command of every batch fails with ``error``.

    The rest of the batch reply is dropped, as when the portal halts a chained export at a failed page.
    """

    def __init__(self, inner: Any, error: dict[str, str]):
        self.inner, self.fetch_token, self.close = inner, inner.fetch_token, inner.close
        self.error = error
        self.batches = 0

    def send(self, method: str, params: Any, auth: Any, **options: Any) -> Any:
        reply = self.inner.send(method, params, auth, **options)
        self.batches += 1
        if method != "batch" or self.batches == 1:
            return reply
        first = next(iter(params["cmd"]))
        return replace(reply, result={**reply.result, "result": {}, "result_error": {first: dict(self.error)}})
