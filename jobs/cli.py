"""The b24sync command line: thin commands that parse options and call the jobs.

Every command runs inside one error boundary (``CommandLine.main``): the project's errors and the
operating system's become one ``error: ...`` message and an exit code (``jobs.errors.failure_of``);
a traceback only with ``-vv``. Commands raise ``jobs.errors.UserError`` instead of printing and exiting.

Adding a command: decorate it with the shared options below and keep the work in ``jobs/``::

    @main.command("status")
    @portal_options()                 # --webhook, --config, --timeout -> portal: PortalOptions
    @db_option                        # --db URL -> db: str | None
    @format_option()                  # --format text|json -> fmt (json: errors as JSON on stdout)
    @out_option("Write it to FILE.")  # --out FILE -> out: Path | None, checked before any request
    def status_command(portal, db, fmt, out):
        with portal.client() as client:
            ...
        return 0                      # the exit code (None means 0)

Also ``config_option`` and ``timeout_option`` alone, and ``write_text`` for output files. Exit codes:
0 ok, 1 error (``UserError``, the default), 2 usage (``UserError(..., exit_code=EXIT_USAGE)``), 130 Ctrl-C.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from jobs.errors import EXIT_ERROR, EXIT_USAGE, UserError, failure_of
from jobs.portal import DEFAULT_TIMEOUT, MAX_TIMEOUT, PortalOptions, current_portal

# ---------------------------------------------------------------- the error boundary


@dataclass
class Invocation:
    """What the boundary knows about the running command line: how to report an error."""

    argv: list[str]
    verbose: int = 0
    json_errors: bool = False  # set by ``format_option`` when the output is JSON
    detailed_exitcode: bool = False  # 2 means "changes": an error must never exit 2


_invocation: ContextVar[Invocation | None] = ContextVar("b24sync_invocation", default=None)


def _verbosity(argv: Sequence[str]) -> int:
    """-v / -vv / --verbose given before the command name."""
    count = 0
    for token in argv:
        if token == "--verbose":
            count += 1
        elif re.fullmatch(r"-v+", token):
            count += len(token) - 1
        elif not token.startswith("-"):
            break
    return count


class CommandLine(click.Group):
    """The root group; its ``main`` is the one place where errors become ``error: ...`` and an exit code."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit with the command's code, or report an error (see ``failure_of``)."""
        argv = list(sys.argv[1:] if args is None else args)
        run = Invocation(argv, verbose=_verbosity(argv), detailed_exitcode="--detailed-exitcode" in argv)
        token = _invocation.set(run)
        portal_token = current_portal.set(None)
        try:
            code = self._guarded(run, prog_name, complete_var, **extra)
        finally:
            current_portal.reset(portal_token)
            _invocation.reset(token)
        if standalone_mode:
            sys.exit(code)
        return code

    def _guarded(self, run: Invocation, prog_name: str | None, complete_var: str | None, **extra: Any) -> int:
        try:
            result = super().main(run.argv, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit as exc:  # a command that called sys.exit, or click after a broken pipe
            if exc.code is None or isinstance(exc.code, int):
                return int(exc.code or 0)
            return report(UserError(str(exc.code)), run)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            return exc.exit_code
        except Exception as exc:
            return report(exc, run)
        except KeyboardInterrupt as exc:
            return report(exc, run)
        return result if isinstance(result, int) and not isinstance(result, bool) else 0


def report(exc: BaseException, run: Invocation) -> int:
    """Print one error (``error: ...`` on stderr, or ``{"errors": [...]}`` on stdout for JSON output)
    and return its exit code; with ``-vv`` the traceback too (not for usage errors). Nothing printed
    holds a secret."""
    from connector.redact import redact

    failure = failure_of(exc, portal=current_portal.get())
    if run.verbose >= 2 and not isinstance(exc, (click.ClickException, click.Abort)):
        click.echo(redact("".join(traceback.format_exception(exc))).rstrip("\n"), err=True)
    if run.json_errors:
        click.echo(json.dumps({"errors": failure.json_errors()}, ensure_ascii=False, indent=2))
    else:
        click.echo(f"error: {failure.message}", err=True)
    code = failure.exit_code
    if run.detailed_exitcode and code == EXIT_USAGE:
        code = EXIT_ERROR
    return code


@click.group(cls=CommandLine)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug and tracebacks).")
@click.version_option(package_name="b24sync")
def main(verbose: int) -> None:
    """b24sync: Bitrix24 pipelines as code, a CRM mirror in SQL, funnel reports, and a local emulator."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- options shared by commands


def timeout_option(default: float = DEFAULT_TIMEOUT) -> Callable[[Any], Any]:
    """``--timeout SECONDS`` (passed as ``timeout_seconds``, None when not given: then ``$B24SYNC_TIMEOUT``,
    then ``default``); for a command that opens its clients itself rather than through ``portal_options``."""
    return click.option(
        "--timeout", "timeout_seconds", default=None, metavar="SECONDS", type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
        help=f"Longest wait for one call, batch or page, retries included (default: $B24SYNC_TIMEOUT, then {default:g}).",
    )


def config_option(help: str = "Config file (default: $B24SYNC_CONFIG, ./b24sync.toml).") -> Callable[[Any], Any]:
    """``--config FILE`` (passed as ``config``; None: ``$B24SYNC_CONFIG``, then ``./b24sync.toml``)."""
    return click.option("--config", "config", default=None, metavar="FILE", help=help)


def portal_options(*, timeout: float = DEFAULT_TIMEOUT) -> Callable[[Any], Any]:
    """``--webhook URL``, ``--config FILE``, ``--timeout SECONDS`` for a command that talks to a portal.

    The command receives them as one ``portal: PortalOptions`` (``portal.client()`` opens the client).
    ``timeout`` is the command's default deadline of one call, batch or page when neither
    ``--timeout`` nor ``B24SYNC_TIMEOUT`` is given.
    """

    def decorate(command: Any) -> Any:
        """Add the three options to ``command`` and hand it ``portal`` instead of them."""
        @functools.wraps(command)
        def run(*args: Any, webhook: str | None, config: str | None, timeout_seconds: float | None, **kwargs: Any) -> Any:
            """The command, called with ``portal: PortalOptions``."""
            portal = PortalOptions(webhook, config, timeout_seconds, default_timeout=timeout)
            return command(*args, portal=portal, **kwargs)

        run.__click_params__ = list(getattr(command, "__click_params__", []))  # type: ignore[attr-defined]
        run = timeout_option(timeout)(run)
        run = config_option("Config file whose [portal] section names the webhook or OAuth app "
                            "(default: $B24SYNC_CONFIG, ./b24sync.toml).")(run)
        return click.option(
            "--webhook", default=None, metavar="URL",
            help="Inbound webhook URL https://PORTAL/rest/USER/CODE/ (default: $B24SYNC_WEBHOOK, then the config).",
        )(run)

    return decorate


def _json_errors(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    run = _invocation.get()
    if run is not None and value == "json":
        run.json_errors = True
    return value


def format_option(choices: Sequence[str] = ("text", "json"), default: str = "text") -> Callable[[Any], Any]:
    """``--format`` (passed as ``fmt``); with ``json`` the boundary prints errors as ``{"errors": [...]}`` on stdout."""
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=default, show_default=True,
        callback=_json_errors, is_eager=True, help="text for people, json for programs.",
    )


db_option = click.option(
    "--db", "db", default=None, metavar="URL",
    help="SQLAlchemy URL of the mirror (default: $B24SYNC_DB, then the config's [database], then sqlite:///b24sync.sqlite3).",
)


def writable_file(path: str | None, option: str = "--out") -> Path | None:
    """``path`` checked before any API call: its directory exists and it is not a directory itself."""
    if path is None:
        return None
    if not path.strip():
        raise UserError(f"{option} is empty: give a file name", exit_code=EXIT_USAGE)
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{option} {path}: is a directory, not a file")
    parent = target.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: the directory {parent} does not exist")
    return target


def _check_out(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    return writable_file(value, "--" + (param.name or "out"))


def out_option(help: str) -> Callable[[Any], Any]:
    """``--out FILE`` (passed as ``out: Path | None``), checked while the arguments are parsed, before any API call."""
    return click.option("--out", "out", default=None, metavar="FILE", callback=_check_out, help=help)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory (never half a file,
    the usual permissions): the worker's ``atomic_write``, one implementation for every output file."""
    from jobs.worker.reports import atomic_write

    atomic_write(path, text)


def _console(err: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=err, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- call


@main.command("call")
@click.argument("method")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@portal_options()
@click.option("--all", "stream_all", is_flag=True, help="Stream every record of a list method (one JSON object per line).")
def call_command(method: str, pairs: tuple[str, ...], portal: PortalOptions, stream_all: bool) -> None:
    """Call one REST METHOD with nested KEY=VALUE parameters (filter[>ID]=5 select[]=ID) and print the result."""
    from jobs.portal import run_call

    run_call(method, pairs, portal=portal, stream_all=stream_all, out=sys.stdout)


# ---------------------------------------------------------------- provision


@main.group()
def provision() -> None:
    """Lead statuses, deal pipelines and stages as code: plan, apply, export (see the README, "Provisioning")."""


def _provision_config(portal: PortalOptions) -> Any:
    """The config's path and validated models (a ConfigError lists every problem, before any API call).
    Warns on stderr when the config manages nothing (no [leads], no [[pipelines]])."""
    from mappings.loader import load_config

    path = portal.config_path()
    if path is None:
        raise UserError("no config file: pass --config FILE (or set B24SYNC_CONFIG, or create ./b24sync.toml)")
    cfg = load_config(path)
    if cfg.leads is None and cfg.pipelines is None:
        click.echo(f"warning: {path} has no [leads] and no [[pipelines]]: nothing is managed, the plan is empty", err=True)
    return path, cfg


@provision.command("plan")
@portal_options()
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there is nothing to change, 2 when there is, 1 on error.")
@format_option()
@out_option("Also save the plan (JSON) for `apply --plan`.")
def provision_plan(portal: PortalOptions, detailed_exitcode: bool, fmt: str, out: Path | None) -> int:
    """Show what apply would change on the portal to match the config."""
    from jobs import provision as pv

    _, cfg = _provision_config(portal)
    with portal.client() as client:
        plan = pv.plan(cfg, client)
    if fmt == "json":
        click.echo(plan.to_json(), nl=False)
    else:
        pv.render_plan(plan, _console())
    if out:
        write_text(out, plan.to_json())
    if plan.errors:
        return EXIT_ERROR
    return 2 if detailed_exitcode and plan.has_changes else 0


@provision.command("apply")
@portal_options()
@click.option("--plan", "plan_file", default=None, metavar="PLAN",
              help="Apply a plan saved by `plan --out` (refused when the portal changed since).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-delete", is_flag=True, help="Allow deleting stages, statuses and pipelines the config no longer declares.")
def provision_apply(portal: PortalOptions, plan_file: str | None, yes: bool, allow_delete: bool) -> int:
    """Change the portal to match the config (or a saved plan), in batches, asking first on a terminal."""
    from connector.errors import B24Error
    from jobs import provision as pv

    cfg = None
    if plan_file is not None:
        plan = pv.read_plan(plan_file)
    else:
        _, cfg = _provision_config(portal)
    out, err = _console(), _console(err=True)
    with portal.client() as client:
        if cfg is not None:
            try:
                plan = pv.plan(cfg, client)
            except B24Error as exc:
                raise pv.ApplyFailed.after(exc, 0, current_portal.get()) from exc
        pv.render_plan(plan, out)
        if plan.errors:
            raise UserError("the plan has errors; nothing was changed")
        if not plan.has_changes:
            return 0
        deletions = plan.deletions()
        if deletions and not allow_delete:
            raise UserError(f"the plan deletes {len(deletions)} object(s); nothing was changed. Re-run with --allow-delete to allow it.")
        if not yes:
            if not sys.stdin.isatty():
                raise UserError("not asking for confirmation without a terminal; nothing was changed. Pass --yes to apply.")
            if not click.confirm("Apply these changes to the portal?", default=False):
                raise UserError("cancelled; nothing was changed")
        step = 0

        def progress(message: str) -> None:
            """One numbered line per step of apply, on stderr."""
            nonlocal step
            step += 1
            err.print(f"[{step}] {message}", markup=False)

        writes = pv.apply(client, plan, allow_delete=allow_delete, progress=progress)
    out.print(f"Apply complete: {writes} write call(s).")
    return 0


@provision.command("export")
@portal_options()
@out_option("Write the TOML here instead of stdout.")
def provision_export(portal: PortalOptions, out: Path | None) -> None:
    """Write the portal's lead statuses and deal pipelines as a config file that plan reads back as no changes."""
    from jobs import provision as pv

    with portal.client() as client:
        text = pv.export(client)
    if out:
        write_text(out, text)
    else:
        click.echo(text, nl=False)


# ---------------------------------------------------------------- sync and db (the mirror)


@main.command("sync")
@portal_options(timeout=660.0)
@db_option
@click.option("--entity", "entities", default=None, metavar="NAMES",
              help="Only these, comma-separated: lead, deal, contact, company, user, deal_category, status, userfield, "
                   "deal_stage_history, lead_status_history, history (default: everything).")
@click.option("--full", is_flag=True, help="Re-read every record and history row (not only what changed since the last run).")
@click.option("--reconcile", is_flag=True, help="Then compare ID sets with the portal: mark deleted records, fetch missing ones.")
@click.option("--wait", is_flag=True, help="When another sync of this mirror is running, wait for it instead of exiting.")
@format_option()
def sync_command(portal: PortalOptions, db: str | None, entities: str | None, full: bool, reconcile: bool, wait: bool, fmt: str) -> int:
    """Mirror the portal's CRM into the database: the first run loads everything, later runs what changed."""
    from jobs.sync.command import sync

    return sync(portal, db_url=db, entities=entities, full=full, reconcile=reconcile, wait=wait, fmt=fmt)


@main.group("db")
def db_group() -> None:
    """The mirror's database schema (Alembic revisions shipped with b24sync)."""


_db_config = click.option("--config", "config", default=None, metavar="FILE",
                          help="Config file whose [database] names the mirror (default: $B24SYNC_CONFIG, ./b24sync.toml).")


@db_group.command("upgrade")
@db_option
@_db_config
def db_upgrade_command(db: str | None, config: str | None) -> int:
    """Bring the mirror's schema to the newest revision (sync does this by itself, under the same lease)."""
    from jobs.sync.command import upgrade

    return upgrade(db, config)


@db_group.command("current")
@db_option
@_db_config
@format_option()
def db_current_command(db: str | None, config: str | None, fmt: str) -> int:
    """Show the mirror's schema revision and the newest one."""
    from jobs.sync.command import current

    return current(db, config, fmt=fmt)


# ---------------------------------------------------------------- report (funnels from the mirror)


@main.group("report")
def report_group() -> None:
    """Funnel reports from the mirror: figures per stage, slices, drill-down (see the README, "Reports")."""


def _report_filters(command: Any) -> Any:
    """The options ``report funnel`` and ``report cards`` share, passed as one ``filters: Filters``."""

    @functools.wraps(command)
    def run(*args: Any, entity: str, pipeline: str | None, mode: str, date_from: str | None, date_to: str | None,
            period: str, assigned: str | None, source: str | None, include_deleted: bool, **kwargs: Any) -> Any:
        from jobs.report.command import Filters

        filters = Filters(entity, pipeline, mode, date_from, date_to, period, assigned, source, include_deleted)
        return command(*args, filters=filters, **kwargs)

    run.__click_params__ = list(getattr(command, "__click_params__", []))  # type: ignore[attr-defined]
    options = [
        click.option("--entity", type=click.Choice(["deal", "lead"]), default="deal", show_default=True,
                     help="Deal pipelines or the lead statuses."),
        click.option("--pipeline", default=None, metavar="NAME|KEY|ID", help="Deal pipeline: name, config key or ID (default 0)."),
        click.option("--mode", type=click.Choice(["conversion", "classic", "entered"]), default="conversion",
                     show_default=True, help="How a card counts at stages (README, \"Reports\")."),
        click.option("--from", "date_from", default=None, metavar="DATE", help="Period start, portal-local date (or with an offset)."),
        click.option("--to", "date_to", default=None, metavar="DATE", help="Period end; a date includes that whole day."),
        click.option("--period", type=click.Choice(["created", "active"]), default="created", show_default=True,
                     help="created: cards created in the period; active: in the funnel during it."),
        click.option("--assigned", default=None, metavar="NAME|ID", help="Only this manager's cards."),
        click.option("--source", default=None, metavar="ID", help="Only cards of this source (SOURCE_ID)."),
        click.option("--include-deleted", is_flag=True, help="Count cards deleted on the portal too."),
    ]
    for option in reversed(options):
        run = option(run)
    return _db_config(db_option(run))


@report_group.command("funnel")
@_report_filters
@click.option("--by", type=click.Choice(["assigned", "source", "month"]), default=None,
              help="Also one funnel per manager, source or creation month.")
@format_option(("table", "csv", "json", "html"), default="table")
@out_option("Write the report to FILE instead of stdout.")
def report_funnel_command(filters: Any, db: str | None, config: str | None, by: str | None, fmt: str, out: Path | None) -> int:
    """Count the cards of a pipeline at every stage and show where they are lost."""
    from jobs.report.command import run_funnel

    text = run_funnel(filters, by=by, fmt=fmt, db_url=db, config=config,
                      terminal=_console() if out is None and fmt == "table" else None)
    _report_out(text, out)
    return 0


@report_group.command("cards")
@_report_filters
@click.option("--stage", required=True, metavar="STATUS_ID", help="The stage whose cards to list.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="At most N cards (newest entry first).")
@format_option(("table", "csv", "json"), default="table")
@out_option("Write the list to FILE instead of stdout.")
def report_cards_command(filters: Any, db: str | None, config: str | None, stage: str, limit: int | None, fmt: str,
                         out: Path | None) -> int:
    """List the cards counted at one stage, with links to them on the portal."""
    from jobs.report.command import run_cards

    text = run_cards(filters, stage=stage, fmt=fmt, limit=limit, db_url=db, config=config,
                     terminal=_console() if out is None and fmt == "table" else None)
    _report_out(text, out)
    return 0


def _report_out(text: str | None, out: Path | None) -> None:
    if text is None:
        return
    if out is not None:
        write_text(out, text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


# ---------------------------------------------------------------- worker, status, demo


@main.command("worker")
@click.option("--config", "configs", multiple=True, metavar="FILE",
              help="A portal's config file (repeat for several portals; default: $B24SYNC_CONFIG, ./b24sync.toml).")
@click.option("--config-dir", default=None, metavar="DIR", help="Also serve every *.toml config in this folder.")
@click.option("--once", is_flag=True, help="Run every declared job once, now, and exit (for cron-driven set-ups).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="N",
              help="Serve Prometheus metrics on /metrics and health on /healthz at this port (0: any free port, logged).")
@click.option("--metrics-host", default="0.0.0.0", show_default=True, metavar="HOST", help="Address the metrics server binds.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines on stderr for people (text) or log collectors (json).")
@click.option("--lease-ttl", type=click.FloatRange(1, 3600), default=60.0, show_default=True, metavar="SECONDS",
              help="How long a mirror's lease outlives a worker that died (it is renewed every third of it).")
@click.option("--threads", type=click.IntRange(1, 256), default=None, metavar="N",
              help="Jobs run at once, across portals (default: 3 per portal + 1, at most 32).")
@click.option("--timeout", "timeout_seconds", default=None, metavar="SECONDS", type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
              help="Longest wait for one call, batch or page, retries included (default: $B24SYNC_TIMEOUT, then 660).")
def worker_command(configs: tuple[str, ...], config_dir: str | None, once: bool, metrics_port: int | None, metrics_host: str,
                   log_format: str, lease_ttl: float, threads: int | None, timeout_seconds: float | None) -> int:
    """Keep every configured portal's mirror fresh on the config's [schedule]: sync, reconcile, reports."""
    from jobs.worker import run_worker

    run = _invocation.get()
    return run_worker(configs, config_dir, once=once, metrics_port=metrics_port, metrics_host=metrics_host,
                      log_format=log_format, lease_ttl=lease_ttl, threads=threads, timeout=timeout_seconds,
                      verbose=run.verbose if run else 0)


@main.command("status")
@db_option
@_db_config
@format_option()
@click.option("--max-lag", type=click.FloatRange(0, min_open=True), default=None, metavar="SECONDS",
              help="Exit 1 when an entity's mirror is further behind than this.")
def status_command(db: str | None, config: str | None, fmt: str, max_lag: float | None) -> int:
    """The mirror's health per entity (last run, rows, lag, last error) and the next runs; exit 1 when unhealthy."""
    from jobs.status import status

    return status(db, config, fmt=fmt, max_lag=max_lag)


@main.command("demo")
@click.option("--out", "out_dir", default="out/demo", show_default=True, metavar="DIR", help="Folder for the mirror, reports and configs.")
@click.option("--deals", type=click.IntRange(50, 200_000), default=2000, show_default=True, help="Deals on the seeded portal.")
@click.option("--port", type=click.IntRange(0, 65535), default=8724, show_default=True,
              help="The emulator's loopback port (0: any free one); serve the saved portal there again later.")
def demo_command(out_dir: str, deals: int, port: int) -> int:
    """Everything on an embedded emulator: provision the example config, sync a mirror, print and write the funnels."""
    from jobs.demo import run_demo

    return run_demo(Path(out_dir), deals=deals, port=port)


# ---------------------------------------------------------------- command groups that live beside their code


def _register_groups() -> None:
    """Command groups that live beside the code they drive."""
    from connector.emulator.cli import emulator

    main.add_command(emulator)


_register_groups()


if __name__ == "__main__":
    main()
