"""The portals one worker serves: one per config file, each with its client, its mirror and its timetable.

Everything is checked before the worker starts (configs, portals, mirrors, report folders), so a
mistake in any file is one clear error and nothing runs. With several configs each portal and each
mirror comes from its own file only: ``B24SYNC_WEBHOOK`` and ``B24SYNC_DB`` would point them all at one.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timezone, tzinfo
from pathlib import Path
from typing import Any

from jobs.errors import EXIT_USAGE, UserError, failure_of
from jobs.worker.schedule import REPORT, Timetable, timetables
from mappings import db
from mappings.config import ConfigError, ScheduleConfig

log = logging.getLogger("jobs.worker")

SYNC_TIMEOUT = 660.0  # a scheduled job may wait out one operating-time window (600 s) per call, batch or page
GLOBAL_ENV = ("B24SYNC_WEBHOOK", "B24SYNC_DB")  # one portal, one mirror: ignored when a worker serves several


@dataclass
class Site:
    """One portal served by the worker: where its config, portal and mirror are, and its jobs' timetables."""

    name: str
    config: Path | None
    schedule: ScheduleConfig
    target: db.Target
    reports_dir: Path | None
    timetables: dict[str, Timetable]
    client: Any = None
    engine: Any = None
    oauth: bool = False
    tz: tzinfo = timezone.utc  # the timezone its cron lines are read in (the portal's, once known)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one writing job of this portal at a time here

    @property
    def mirror(self) -> str:
        """The mirror as people may see it (password masked)."""
        return self.target.shown

    def close(self) -> None:
        """Close the client and the engine's connections."""
        if self.client is not None:
            self.client.close()
        if self.engine is not None:
            self.engine.dispose()


def config_files(configs: Sequence[str], config_dir: str | None, environ: Mapping[str, str] | None = None) -> list[Path | None]:
    """The config files to serve: every ``--config``, then every ``*.toml`` of ``--config-dir`` (sorted);
    without either, the usual ``$B24SYNC_CONFIG`` or ``./b24sync.toml`` (or none: the portal from ``B24SYNC_WEBHOOK``)."""
    from jobs.portal import config_path

    found: list[Path | None] = [config_path(c, environ) for c in configs]
    if config_dir is not None:
        if not config_dir.strip():
            raise UserError("--config-dir is empty: give a folder of config files", exit_code=EXIT_USAGE)
        folder = Path(config_dir)
        if not folder.is_dir():
            raise UserError(f"--config-dir {config_dir}: not a folder")
        files = sorted(p for p in folder.glob("*.toml") if p.is_file())
        if not files:
            raise UserError(f"--config-dir {config_dir}: holds no *.toml config file")
        found.extend(files)
    if not found:
        found.append(config_path(None, environ))
    unique: list[Path | None] = []
    for path in found:
        if path is None or all(other is None or other.resolve() != path.resolve() for other in unique):
            unique.append(path)
    return unique


def _names(paths: Sequence[Path | None]) -> list[str]:
    """A short, unique name per config: its file name without .toml (the folder too when names repeat)."""
    stems = [p.stem if p is not None else "default" for p in paths]
    return [f"{p.parent.name}/{p.stem}" if p is not None and stems.count(p.stem) > 1 else stem
            for p, stem in zip(paths, stems)]


def load_sites(
    configs: Sequence[str] = (),
    config_dir: str | None = None,
    *,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[Site]:
    """Read, check and open every portal the worker serves (clients and engines, no request yet).

    Raises ``UserError`` naming every file that has problems, two configs that share a mirror,
    or a report folder that cannot be made; nothing is left open then.
    """
    environ = dict(os.environ if environ is None else environ)
    paths = config_files(configs, config_dir, environ)
    if len(paths) > 1:
        environ = {k: v for k, v in environ.items() if k not in GLOBAL_ENV}
    sites: list[Site] = []
    problems: list[str] = []
    for name, path in zip(_names(paths), paths):
        try:
            sites.append(_site(name, path, timeout, environ))
        except (UserError, ConfigError, OSError) as exc:  # every file's problems are reported together
            problems.append(failure_of(exc).message)
    try:
        if problems:
            raise UserError("\n".join(problems) if len(problems) > 1 else problems[0])
        _check_distinct(sites)
        for site in sites:
            _open(site, timeout, environ)
    except BaseException:
        for site in sites:
            site.close()
        raise
    return sites


def _site(name: str, path: Path | None, timeout: float | None, environ: Mapping[str, str]) -> Site:
    from connector.auth import OAuthAuth
    from jobs.portal import resolve
    from mappings.config import Config
    from mappings.loader import load_config

    config = load_config(path) if path is not None else Config()
    if path is None and not environ.get("B24SYNC_WEBHOOK"):
        raise UserError("no config: pass --config FILE or --config-dir DIR (or set B24SYNC_CONFIG, or create ./b24sync.toml); "
                        "each config's [portal] names its portal and [schedule] says when its jobs run")
    spec = resolve(None, path, environ=environ)  # PortalNotConfigured names what is missing
    try:
        target = db.resolve(None, config.database, environ)
    except db.MirrorDatabaseError as exc:
        raise UserError(f"{path or 'the mirror'}: {exc}") from None
    reports = None
    if config.schedule.reports_dir is not None:
        reports = Path(config.schedule.reports_dir).expanduser()
        if not reports.is_absolute():
            reports = (path.resolve().parent if path is not None else Path.cwd()) / reports
    return Site(name, path, config.schedule, target, reports, timetables(config.schedule), oauth=isinstance(spec.auth, OAuthAuth))


def _check_distinct(sites: Sequence[Site]) -> None:
    seen: dict[tuple[str, str | None], Site] = {}
    for site in sites:
        key = (_mirror_key(site.target.url), site.target.schema)
        if key in seen:
            other = seen[key]
            raise UserError(f"{other.config or other.name} and {site.config or site.name} use the same mirror "
                            f"{site.mirror}: give each portal its own database (or [database] schema)")
        seen[key] = site


def _mirror_key(url: str) -> str:
    """The URL with a SQLite file's path made absolute, so two spellings of one file are one mirror."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - open_engine reports a bad URL itself
        return url
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return f"sqlite:///{Path(parsed.database).resolve()}"
    return parsed.render_as_string(hide_password=False)


def _open(site: Site, timeout: float | None, environ: Mapping[str, str]) -> None:
    from jobs.portal import open_client
    from jobs.sync.errors import MirrorUnavailable

    if site.reports_dir is not None:
        try:
            site.reports_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{site.config}: [schedule] reports_dir {site.reports_dir}: cannot create it "
                            f"({exc.strerror or type(exc).__name__})") from None
        if not os.access(site.reports_dir, os.W_OK):
            raise UserError(f"{site.config}: [schedule] reports_dir {site.reports_dir} is not writable")
    try:
        site.engine = db.open_engine(site.target)
    except db.MirrorDatabaseError as exc:
        raise MirrorUnavailable(f"{site.config or site.name}: {exc}") from None
    site.client = open_client(None, site.config, timeout=timeout, default_timeout=SYNC_TIMEOUT, environ=environ)


def warnings_of(site: Site) -> list[str]:
    """What an operator should know about a portal's timetable before it runs."""
    found = []
    if site.schedule.report_cron is not None and REPORT not in site.timetables:
        found.append("report_cron is set but reports_dir is not: no reports are written")
    if site.schedule.reconcile_cron is None and not site.oauth:
        found.append("no reconcile_cron: records deleted on the portal stay in the mirror (deleted_at unset)")
    return found
