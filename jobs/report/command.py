"""``b24sync report funnel`` and ``b24sync report cards``: open the mirror named as for ``sync``, run the
report, and render it in the format asked for (the command line itself only parses options).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from jobs.report.build import cards, funnel
from jobs.report.model import CardList, FunnelReport
from jobs.report.render_csv import render_cards_csv, render_csv
from jobs.report.render_html import render_html
from jobs.report.render_table import render_cards_table, render_table

HTML_CARDS = 100  # cards per stage the HTML page lists for its drill-down
FILE_WIDTH = 140  # columns of a table written to a file


@dataclass(frozen=True)
class Filters:
    """The options ``funnel`` and ``cards`` share: which funnel, counted how, over which cards."""

    entity: str = "deal"
    pipeline: str | None = None
    mode: str = "conversion"
    date_from: str | None = None
    date_to: str | None = None
    period: str = "created"
    assigned: str | None = None
    source: str | None = None
    include_deleted: bool = False

    def options(self) -> dict[str, Any]:
        """As keyword arguments of ``funnel``/``cards``."""
        return dict(entity=self.entity, pipeline=self.pipeline, mode=self.mode, date_from=self.date_from,
                    date_to=self.date_to, period=self.period, assigned=self.assigned, source=self.source,
                    include_deleted=self.include_deleted)


@contextlib.contextmanager
def _mirror(db_url: str | None, config: str | None, environ: Mapping[str, str] | None) -> Iterator[tuple[Any, list[str]]]:
    """The mirror's engine (disposed afterwards), and the config's key of its default pipeline
    (``--pipeline sales`` names pipeline 0: the portal stores no key on it)."""
    from jobs.portal import config_path
    from jobs.sync.command import mirror_target, open_mirror
    from mappings.loader import load_config

    environ = os.environ if environ is None else environ
    path = config_path(config, environ)
    keys: list[str] = []
    if path is not None:
        pipelines = load_config(path).pipelines or []
        keys = [p.key for p in pipelines if getattr(p, "default", False)]
    engine = open_mirror(mirror_target(db_url, config, environ))
    try:
        yield engine, keys
    finally:
        engine.dispose()


def _table_text(draw: Any) -> str:
    buffer = io.StringIO()
    draw(Console(file=buffer, width=FILE_WIDTH, color_system=None, highlight=False, soft_wrap=True))
    return buffer.getvalue()


def funnel_output(report: FunnelReport, fmt: str, *, terminal: Console | None = None) -> str | None:
    """The report as text in ``fmt`` (table, csv, json, html); a table goes straight to ``terminal`` when given."""
    if fmt == "json":
        return report.to_json()
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    if terminal is not None:
        render_table(report, terminal)
        return None
    return _table_text(lambda console: render_table(report, console))


def cards_output(found: CardList, fmt: str, *, terminal: Console | None = None) -> str | None:
    """A drill-down list as text in ``fmt`` (table, csv, json); a table goes straight to ``terminal`` when given."""
    if fmt == "json":
        return found.to_json()
    if fmt == "csv":
        return render_cards_csv(found)
    if terminal is not None:
        render_cards_table(found, terminal)
        return None
    return _table_text(lambda console: render_cards_table(found, console))


def run_funnel(
    filters: Filters,
    *,
    by: str | None,
    fmt: str,
    db_url: str | None = None,
    config: str | None = None,
    terminal: Console | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """``report funnel``: the funnel of the mirror as text (None when a table was printed on ``terminal``)."""
    with _mirror(db_url, config, environ) as (engine, keys):
        report = funnel(engine, by=by, cards_per_stage=HTML_CARDS if fmt == "html" else 0, default_keys=keys,
                        **filters.options())
    return funnel_output(report, fmt, terminal=terminal)


def run_cards(
    filters: Filters,
    *,
    stage: str,
    fmt: str,
    limit: int | None = None,
    db_url: str | None = None,
    config: str | None = None,
    terminal: Console | None = None,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """``report cards``: the cards counted at ``stage`` as text (None when a table was printed on ``terminal``)."""
    with _mirror(db_url, config, environ) as (engine, keys):
        found = cards(engine, stage=stage, limit=limit, default_keys=keys, **filters.options())
    return cards_output(found, fmt, terminal=terminal)
