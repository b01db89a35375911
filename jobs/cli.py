"""The b24sync command line: thin wrappers that parse options and call the jobs.

Each command group lives in its own section below; keep commands thin and put the work in jobs/.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.version_option(package_name="b24sync")
def main(verbose: int) -> None:
    """b24sync: Bitrix24 pipelines as code, a CRM mirror in SQL, funnel reports, and a local emulator."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- call (issue 3)


def portal_options(command: Any) -> Any:
    """``--webhook`` and ``--config``: where the portal comes from (see jobs/portal.py); reusable by any command."""
    command = click.option(
        "--config", "config", default=None, type=click.Path(dir_okay=False),
        help="Config file whose [portal] section names the webhook or OAuth app (default: $B24SYNC_CONFIG, ./b24sync.toml).",
    )(command)
    return click.option(
        "--webhook", default=None, metavar="URL",
        help="Inbound webhook URL https://PORTAL/rest/USER/CODE/ (default: $B24SYNC_WEBHOOK, then the config).",
    )(command)


@main.command("call")
@click.argument("method")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@portal_options
@click.option("--all", "stream_all", is_flag=True, help="Stream every record of a list method (one JSON object per line).")
def call_command(method: str, pairs: tuple[str, ...], webhook: str | None, config: str | None, stream_all: bool) -> None:
    """Call one REST METHOD with nested KEY=VALUE parameters (filter[>ID]=5 select[]=ID) and print the result."""
    from jobs.portal import CallFailed, run_call

    try:
        run_call(method, pairs, webhook=webhook, config=config, stream_all=stream_all, out=sys.stdout)
    except CallFailed as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)



# ---------------------------------------------------------------- provision (issue 4)


@main.group()
def provision() -> None:
    """Lead statuses, deal pipelines and stages as code: plan, apply, export (see the README, "Provisioning")."""


def _fail(message: str, code: int = 1, fmt: str = "text") -> None:
    """Report an error and exit: ``error: ...`` on stderr, or ``{"errors": [{"message": ...}]}`` on
    stdout with ``--format json`` (a program reads that output)."""
    if fmt == "json":
        _echo_json({"errors": [{"message": message}]})
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _echo_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _provision_config(config: str | None, fmt: str = "text") -> Any:
    """The validated config, or every problem printed and exit 1 (before any API call). Warns on
    stderr when the config manages nothing (no [leads], no [[pipelines]])."""
    from jobs.portal import config_path
    from mappings.config import ConfigError, load_config

    path = config_path(config)
    if path is None:
        _fail("no config file: pass --config FILE (or set B24SYNC_CONFIG, or create ./b24sync.toml)", fmt=fmt)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        if fmt == "json":
            _echo_json({"errors": [{"location": p.location, "message": p.message, "line": p.line, "column": p.column,
                                    "source": p.source, "text": str(p)} for p in exc.problems]})
            sys.exit(1)
        click.echo(f"error: {path} has {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(1)
    if cfg.leads is None and cfg.pipelines is None:
        click.echo(f"warning: {path} has no [leads] and no [[pipelines]]: nothing is managed, the plan is empty", err=True)
    return path, cfg


def _provision_gateway(webhook: str | None, config: Any, fmt: str = "text") -> Any:
    from jobs.portal import PortalNotConfigured, open_client
    from jobs.provision import ClientGateway

    try:
        return ClientGateway(open_client(webhook, config))
    except PortalNotConfigured as exc:
        _fail(str(exc), fmt=fmt)


def _console(err: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=err, highlight=False, soft_wrap=True)


@provision.command("plan")
@portal_options
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there is nothing to change, 2 when there is, 1 on error.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text for people, json for programs (the plan as data).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also save the plan (JSON) for `apply --plan`.")
def provision_plan(webhook: str | None, config: str | None, detailed_exitcode: bool, fmt: str, out: str | None) -> None:
    """Show what apply would change on the portal to match the config."""
    from connector.errors import B24Error
    from connector.redact import redact
    from jobs import provision as pv

    path, cfg = _provision_config(config, fmt)
    gateway = _provision_gateway(webhook, path, fmt)
    try:
        plan = pv.plan(cfg, gateway)
    except B24Error as exc:
        _fail(redact(str(exc)), fmt=fmt)
    finally:
        gateway.client.close()
    if fmt == "json":
        click.echo(plan.to_json(), nl=False)
    else:
        pv.render_plan(plan, _console())
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(plan.to_json())
    if plan.errors:
        sys.exit(1)
    sys.exit(2 if detailed_exitcode and plan.has_changes else 0)


@provision.command("apply")
@portal_options
@click.option("--plan", "plan_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Apply a plan saved by `plan --out` (refused when the portal changed since).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-delete", is_flag=True, help="Allow deleting stages, statuses and pipelines the config no longer declares.")
def provision_apply(webhook: str | None, config: str | None, plan_file: str | None, yes: bool, allow_delete: bool) -> None:
    """Change the portal to match the config (or a saved plan), in batches, asking first on a terminal."""
    from connector.errors import B24Error
    from connector.redact import redact
    from jobs import provision as pv
    from jobs.portal import config_path

    if plan_file:
        try:
            with open(plan_file, encoding="utf-8") as fh:
                plan = pv.Plan.from_json(fh.read())
        except pv.ProvisionError as exc:
            _fail(f"{plan_file}: {exc}")
        path, cfg = config_path(config), None
    else:
        path, cfg = _provision_config(config)
    gateway = _provision_gateway(webhook, path)
    out, err = _console(), _console(err=True)
    try:
        if cfg is not None:
            plan = pv.plan(cfg, gateway)
        pv.render_plan(plan, out)
        if plan.errors:
            _fail("the plan has errors; nothing was changed")
        if not plan.has_changes:
            return
        deletions = plan.deletions()
        if deletions and not allow_delete:
            _fail(f"the plan deletes {len(deletions)} object(s); nothing was changed. Re-run with --allow-delete to allow it.")
        if not yes:
            if not sys.stdin.isatty():
                _fail("not asking for confirmation without a terminal; nothing was changed. Pass --yes to apply.")
            if not click.confirm("Apply these changes to the portal?", default=False):
                _fail("cancelled; nothing was changed")
        step = 0

        def progress(message: str) -> None:
            nonlocal step
            step += 1
            err.print(f"[{step}] {message}", markup=False)

        writes = pv.apply(gateway, plan, allow_delete=allow_delete, progress=progress)
        out.print(f"Apply complete: {writes} write call(s).")
    except pv.ProvisionError as exc:
        _fail("\n".join(exc.problems))
    except B24Error as exc:
        _fail(redact(str(exc)) + "\nThe portal may be partly changed: run apply again; it continues from where it is.")
    finally:
        gateway.client.close()


@provision.command("export")
@portal_options
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the TOML here instead of stdout.")
def provision_export(webhook: str | None, config: str | None, out: str | None) -> None:
    """Write the portal's lead statuses and deal pipelines as a config file that plan reads back as no changes."""
    from connector.errors import B24Error
    from connector.redact import redact
    from jobs import provision as pv
    from jobs.portal import config_path

    gateway = _provision_gateway(webhook, config_path(config))
    try:
        text = pv.export(gateway)
    except B24Error as exc:
        _fail(redact(str(exc)))
    finally:
        gateway.client.close()
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)



def _register_groups() -> None:
    """Command groups that live beside the code they drive."""
    from connector.emulator.cli import emulator

    main.add_command(emulator)


_register_groups()


if __name__ == "__main__":
    main()
