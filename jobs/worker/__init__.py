"""The scheduled worker: keeps every configured portal's mirror fresh, catches deletions, writes reports.

``run_worker(...)`` is ``b24sync worker``: ``portals`` reads the configs, ``schedule`` turns
``[schedule]`` into triggers, ``runs`` is one job run, ``service`` the process (scheduler, signals,
``--once``), ``reports`` the report files, ``logs`` the text/JSON lines; metrics are ``jobs.metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jobs.worker.portals import Site, load_sites
from jobs.worker.runs import JobRun
from jobs.worker.service import Worker, default_name

__all__ = ["JobRun", "Site", "Worker", "default_name", "load_sites", "run_worker"]


def run_worker(
    configs: Sequence[str] = (),
    config_dir: str | None = None,
    *,
    once: bool = False,
    metrics_port: int | None = None,
    metrics_host: str = "0.0.0.0",
    log_format: str = "text",
    lease_ttl: float = 60.0,
    threads: int | None = None,
    timeout: float | None = None,
    name: str | None = None,
    verbose: int = 0,
    environ: Mapping[str, str] | None = None,
) -> int:
    """``b24sync worker``: check every config, then serve (or, with ``once``, run each job once); the exit code."""
    from jobs.worker import logs

    sites = load_sites(configs, config_dir, timeout=timeout, environ=environ)  # a mistake anywhere: nothing starts
    logs.setup(log_format, verbose=verbose)
    address = (metrics_host, metrics_port) if metrics_port is not None else None
    worker = Worker(sites, name=name, lease_ttl=lease_ttl, threads=threads, metrics_address=address)
    return worker.run(once=once)
