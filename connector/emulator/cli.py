"""``b24sync emulator``: the command group that serves the local Bitrix24 emulator (see server.py).

Every option it cannot use is a usage error (exit 2) that names the option, never a traceback.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import click

_OFFSET = re.compile(r"^[+-](\d{1,2})(?::([0-5]\d))?$")


def _offset(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--timezone``: a UTC offset such as +03:00 (hours below 24)."""
    match = _OFFSET.match(value.strip())
    if match is None or int(match.group(1)) > 23:
        raise click.BadParameter(f"{value!r} is not a UTC offset such as +03:00 or -05:30")
    return value.strip()


@click.group()
def emulator() -> None:
    """A local Bitrix24 REST emulator (webhook and OAuth, limits, faults, seeded data)."""


@emulator.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Port (0 = a free one).")
@click.option("--secret", default=None, help="Webhook code (default: random).")
@click.option("--seed", default=None, type=click.IntRange(min=0), help="Build a seeded portal of about N deals (deterministic).")
@click.option("--rate", default=2.0, show_default=True, type=float, help="Leaky bucket drain, requests per second.")
@click.option("--burst", default=50.0, show_default=True, type=float, help="Leaky bucket size (503 above it).")
@click.option("--operating-budget", default=480.0, show_default=True, type=float,
              help="Seconds of operating time per method per 10 minutes (429 above it).")
@click.option("--faults", default=None, help='Fault injection, e.g. "5xx=0.05,timeout=0.02,html=0.01,cut=0.01,reset=0.01,seed=7,hang=30".')
@click.option("--latency", default=0.0, show_default=True, type=float,
              help="Delay each reply by its modelled cost times SCALE plus a 20 ms round trip.")
@click.option("--state", default=None, type=click.Path(dir_okay=False), help="Load the portal from PATH and save it there on exit.")
@click.option("--timezone", default="+03:00", show_default=True, callback=_offset, help="Portal UTC offset.")
@click.option("--history", default="current", show_default=True, type=click.Choice(["current", "legacy"]),
              help="Stage history writer: today's portals, or the older one that drops a won/lost row when a record moves on.")
@click.option("--oauth-client-id", default=None, help="Install an OAuth app with this client_id.")
@click.option("--oauth-client-secret", default=None, help="Its client_secret.")
@click.option("--oauth-tokens", default=None, type=click.Path(dir_okay=False),
              help="Write the app's first token reply (JSON, mode 600) to PATH.")
@click.option("--token-ttl", default=3600.0, show_default=True, type=float, help="Access token lifetime, seconds.")
@click.option("--tls", is_flag=True, help="Serve HTTPS with a self-signed certificate made at start (its path goes to stderr).")
@click.option("--tls-cert", default=None, type=click.Path(dir_okay=False), help="Serve HTTPS with this certificate (PEM) ...")
@click.option("--tls-key", default=None, type=click.Path(dir_okay=False), help="... and this private key (PEM).")
def emulator_serve(**options: Any) -> None:
    """Serve until SIGINT/SIGTERM; prints one line `webhook: URL` to stdout when ready."""
    from connector.emulator.faults import FaultPlan
    from connector.emulator.server import ServeError, serve

    try:
        FaultPlan.parse(options["faults"])
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    options["access_ttl"] = options.pop("token_ttl")
    try:
        code = serve(**options)
    except ServeError as exc:
        raise click.BadParameter(exc.message, param_hint=exc.option) from None
    sys.exit(code)
