"""The funnel and drill-down lists as rich tables on a terminal, with a bar per stage.

``render_table(report, console)`` prints the total funnel, then (with ``--by``) one line of stage
counts per slice, then (leads) the quality per source channel.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobs.report import text
from jobs.report.model import FAILURE, REMOVED, SUCCESS, CardList, Funnel, FunnelReport

BAR_WIDTH = 24
STYLES = {SUCCESS: "green", FAILURE: "red", REMOVED: "dim"}


def bar(count: int, largest: int, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of eighth-blocks, ``count`` out of ``largest``, at most ``width`` cells."""
    if largest <= 0 or count <= 0:
        return ""
    eighths = max(1, round(count / largest * width * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + ("" if rest == 0 else " ▏▎▍▌▋▊▉"[rest])


def bar_width(console_width: int) -> int:
    """Cells for the bars: what the other columns leave on the console, between 6 and ``BAR_WIDTH``."""
    return max(6, min(BAR_WIDTH, console_width - 100))


def funnel_table(funnel: Funnel, title: str | None = None, *, width: int = BAR_WIDTH) -> Table:
    """One funnel: a row per stage (failure and removed stages in their own sections), ``width`` cells of bar."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("Stage", justify="left", ratio=1, min_width=16)
    for name in ("Cards", "", "Share", "Conv.", "Lost", "Amount", "Median", "P90"):
        table.add_column(name, justify="left" if name == "" else "right", no_wrap=True)
    largest = max((f.count for f in funnel.stages), default=0)
    section = None
    for figures in funnel.stages:
        kind = figures.stage.semantics if figures.stage.semantics in (FAILURE, REMOVED) else "main"
        if section is not None and kind != section:
            table.add_section()
        section = kind
        weak = funnel.weakest is not None and funnel.weakest.stage.id == figures.stage.id
        label = Text(f"{figures.stage.id} {figures.stage.name}", style=STYLES.get(figures.stage.semantics, ""))
        if figures.stage.semantics == REMOVED:
            label.append(" (removed)")
        if weak:
            label.append("  ◀ weakest", style="bold yellow")
        amounts = "\n".join(text.money({c: v}) for c, v in figures.amounts.items()) or text.DASH
        table.add_row(
            label, str(figures.count),
            Text(bar(figures.count, largest, width), style=STYLES.get(figures.stage.semantics, "cyan")),
            text.percent(figures.share), text.percent(figures.conversion),
            text.DASH if figures.drop_off is None else str(figures.drop_off), amounts,
            text.duration(figures.median_seconds), text.duration(figures.p90_seconds),
        )
    return table


def summary(funnel: Funnel) -> str:
    """Totals, win rate, cycle time and the weakest stage in two lines."""
    lines = [
        f"{text.totals(funnel.cards, funnel.won, funnel.lost, funnel.open, funnel.moved_out)}; "
        f"win rate {text.percent(funnel.win_rate)}; median cycle to won {text.duration(funnel.cycle_median_seconds)}",
        f"Weakest stage: {funnel.weakest.text() if funnel.weakest else 'none (no card was lost between stages)'}",
    ]
    return "\n".join(lines)


def slices_table(report: FunnelReport) -> Table:
    """One row per slice: its stage counts, win rate and weakest stage."""
    table = Table(title=f"By {text.SLICE_TITLES.get(report.by or '', report.by)}", title_justify="left",
                  show_edge=False, pad_edge=False)
    table.add_column("Slice")
    stage_ids = [f.stage.id for f in report.total.stages]
    for stage_id in stage_ids:
        table.add_column(stage_id, justify="right")
    table.add_column("Won", justify="right")
    table.add_column("Win rate", justify="right")
    table.add_column("Weakest")
    for funnel in report.funnels():
        counts = funnel.counts()
        label = "total" if funnel.slice is None else funnel.slice.label
        table.add_row(label, *(str(counts.get(s, 0)) for s in stage_ids), str(funnel.won),
                      text.percent(funnel.win_rate), funnel.weakest.stage.id if funnel.weakest else text.DASH,
                      style="bold" if funnel.slice is None else "")
    return table


def channels_table(funnel: Funnel) -> Table:
    """Lead quality per source channel."""
    table = Table(title="Lead quality by source", title_justify="left", show_edge=False, pad_edge=False)
    for name, justify in (("Source", "left"), ("Leads", "right"), ("Qualified", "right"),
                          ("Converted", "right"), ("Junk", "right")):
        table.add_column(name, justify=justify)
    for channel in funnel.channels or []:
        table.add_row(
            f"{channel.name} ({channel.source_id})" if channel.source_id else channel.name, str(channel.leads),
            f"{channel.qualified} ({text.percent(channel.share(channel.qualified))})",
            f"{channel.converted} ({text.percent(channel.share(channel.converted))})",
            f"{channel.junk} ({text.percent(channel.share(channel.junk))})",
        )
    return table


def render_table(report: FunnelReport, console: Console) -> None:
    """Print the report on ``console``: title, the funnel with bars, totals, weakest stage, slices, channels."""
    console.print(Text(text.title(report), style="bold"))
    console.print(text.subtitle(report), style="dim", markup=False)
    console.print(funnel_table(report.total, width=bar_width(console.width)))
    console.print(summary(report.total), markup=False)
    if report.by is not None:
        console.print()
        console.print(slices_table(report))
    if report.total.channels is not None:
        console.print()
        console.print(channels_table(report.total))


def render_cards_table(cards: CardList, console: Console) -> None:
    """Print a drill-down list: one row per card with its link (dates in the portal's timezone)."""
    tz_name = cards.timezone
    shown = f"{len(cards)} of {cards.total}" if cards.total != len(cards) else str(cards.total)
    table = Table(title=f"{cards.stage.id} {cards.stage.name}: {shown} card(s) ({cards.mode})", title_justify="left",
                  show_edge=False, pad_edge=False)
    for name, justify in (("ID", "right"), ("Title", "left"), ("Amount", "right"), ("Manager", "left"),
                          ("Entered", "left"), ("Days", "right"), ("Link", "left")):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=name in ("ID", "Amount", "Entered", "Days"))
    for card in cards:
        table.add_row(
            str(card.id), card.title, text.money({card.currency: card.amount}) if card.amount is not None else text.DASH,
            card.manager, text.moment(card.entered_at, tz_name),
            text.DASH if card.days_in_stage is None else f"{card.days_in_stage:.1f}", card.url or text.DASH,
        )
    console.print(table)
