"""The funnel as one self-contained HTML page: an inline SVG chart, the tables, the drill-down lists.

No external font, script, style or image: the page reads the same offline. A click (or Enter) on a
stage in the chart, the stage table or the slice table shows the cards counted there.
"""

from __future__ import annotations

import re
from html import escape

from jobs.report import text
from jobs.report.model import FAILURE, PROCESS, REMOVED, SUCCESS, CardList, Funnel, FunnelReport, StageFigures

_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
DEFAULT_COLORS = {PROCESS: "#39A8EF", SUCCESS: "#7BD500", FAILURE: "#FF5752", REMOVED: "#A8ADB4"}

STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #667085; --line: #e4e7ec; --accent: #f59e0b; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 24px; color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; } h3 { font-size: 15px; margin: 0 0 8px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.summary { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; padding: 0; list-style: none; }
.summary li { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; min-width: 96px; }
.summary b { display: block; font-size: 18px; }
.weakest { border-left: 4px solid var(--accent); background: #fffbeb; padding: 8px 12px; margin: 12px 0; }
svg.funnel { width: 100%; height: auto; display: block; margin: 8px 0 4px; }
svg .stage { cursor: pointer; } svg .stage:hover rect.bar, svg .stage:focus rect.bar { opacity: .8; }
svg .stage:focus { outline: none; } svg .stage.selected rect.hit { fill: #eef6ff; }
svg text { font-size: 13px; fill: var(--ink); } svg text.figure { font-variant-numeric: tabular-nums; }
svg text.group { fill: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: right; vertical-align: top; }
th { color: var(--muted); font-weight: 600; background: #f9fafb; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
tr[data-stage], td[data-stage] { cursor: pointer; } tr[data-stage]:hover, td[data-stage]:hover { background: #f5faff; }
tr.selected { background: #eef6ff; } tr.first td { border-top: 2px solid var(--line); }
.tag { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; margin-left: 6px; background: #f2f4f7; color: var(--muted); }
.tag.weak { background: #fef3c7; color: #92400e; }
.cards { border: 1px solid var(--line); border-radius: 8px; padding: 12px; margin: 8px 0; }
.hint { color: var(--muted); }
"""

SCRIPT = """
(function () {
  function show(stage, slice) {
    var found = null;
    document.querySelectorAll('.cards').forEach(function (box) {
      var match = box.getAttribute('data-stage') === stage;
      box.hidden = !match;
      if (match) { found = box; }
    });
    document.querySelectorAll('[data-stage].selectable').forEach(function (el) {
      el.classList.toggle('selected', el.getAttribute('data-stage') === stage);
    });
    if (!found) { return; }
    var shown = 0;
    found.querySelectorAll('tbody tr').forEach(function (row) {
      var keep = slice === null || row.getAttribute('data-slice') === slice;
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    var note = found.querySelector('.slice-note');
    if (note) {
      note.hidden = slice === null;
      note.textContent = slice === null ? '' : 'Only the cards of ' + sliceLabel(slice) + ': ' + shown + ' in this list.';
    }
    found.scrollIntoView({block: 'nearest'});
  }
  function sliceLabel(key) {
    var cell = document.querySelector('[data-slice-label="' + CSS.escape(key) + '"]');
    return cell ? cell.textContent : key;
  }
  function activate(event) {
    var el = event.target.closest('[data-stage]');
    if (!el || el.closest('.cards')) { return; }
    if (event.type === 'keydown' && event.key !== 'Enter' && event.key !== ' ') { return; }
    event.preventDefault();
    show(el.getAttribute('data-stage'), el.hasAttribute('data-slice') ? el.getAttribute('data-slice') : null);
  }
  document.addEventListener('click', activate);
  document.addEventListener('keydown', activate);
})();
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _color(figures: StageFigures) -> str:
    color = figures.stage.color or ""
    return color if _COLOR.match(color) else DEFAULT_COLORS.get(figures.stage.semantics, "#39A8EF")


def _clip(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def funnel_svg(funnel: Funnel) -> str:
    """The funnel drawn as an inline SVG: a centred bar per stage, failures and removed stages apart."""
    width, label_w, figure_w, row_h, gap = 960, 330, 170, 34, 6
    bar_area = width - label_w - figure_w
    largest = max((f.count for f in funnel.stages), default=0) or 1
    parts: list[str] = []
    y = 4
    group = None
    for figures in funnel.stages:
        kind = figures.stage.semantics if figures.stage.semantics in (FAILURE, REMOVED) else "main"
        if kind != group and kind != "main":
            y += 10
            heading = "failure stages" if kind == FAILURE else "removed stages (history only)"
            parts.append(f'<text class="group" x="{label_w - 12}" y="{y + 12}" text-anchor="end">{heading}</text>')
            y += 20
        group = kind
        bar_w = max(2.0, bar_area * figures.count / largest) if figures.count else 0.0
        x = label_w + (bar_area - bar_w) / 2
        weak = funnel.weakest is not None and funnel.weakest.stage.id == figures.stage.id
        name = _clip(figures.stage.name or figures.stage.id, 42)
        share = text.percent(figures.share)
        conv = f" · {text.percent(figures.conversion)} of prev." if figures.conversion is not None else ""
        parts.append(
            f'<g class="stage selectable" data-stage="{_e(figures.stage.id)}" role="button" tabindex="0">'
            f'<title>{_e(figures.stage.id)} {_e(figures.stage.name)}: {figures.count} ({share}){_e(conv)}</title>'
            f'<rect class="hit" x="0" y="{y}" width="{width}" height="{row_h}" fill="transparent"/>'
            f'<text x="{label_w - 12}" y="{y + row_h / 2 + 5}" text-anchor="end">{_e(name)}'
            f'{" ◀" if weak else ""}</text>'
            f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{bar_w:.1f}" height="{row_h - 6}" rx="4" '
            f'fill="{_color(figures)}"/>'
            f'<text class="figure" x="{width - figure_w + 10}" y="{y + row_h / 2 + 5}">{figures.count} · {share}</text>'
            "</g>"
        )
        y += row_h + gap
    height = y + 4
    return (f'<svg class="funnel" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="funnel chart">{"".join(parts)}</svg>')


def _summary(funnel: Funnel) -> str:
    items = [("cards", funnel.cards), ("won", funnel.won), ("lost", funnel.lost), ("open", funnel.open)]
    if funnel.moved_out:
        items.append(("moved out", funnel.moved_out))
    items += [("win rate", text.percent(funnel.win_rate)), ("median cycle to won", text.duration(funnel.cycle_median_seconds))]
    cells = "".join(f"<li><b>{_e(value)}</b>{_e(name)}</li>" for name, value in items)
    weakest = (f"Weakest stage: {_e(funnel.weakest.text())}" if funnel.weakest
               else "Weakest stage: none (no card was lost between stages)")
    return f'<ul class="summary">{cells}</ul><p class="weakest">{weakest}</p>'


def _stage_table(funnel: Funnel) -> str:
    head = ("Stage", "Cards", "Share", "Conversion", "Lost", "Amount", "Median time", "P90 time")
    rows = []
    previous_kind = None
    for f in funnel.stages:
        kind = f.stage.semantics if f.stage.semantics in (FAILURE, REMOVED) else "main"
        tags = ""
        if f.stage.semantics != PROCESS:
            tags += f'<span class="tag">{_e(f.stage.semantics)}</span>'
        if funnel.weakest is not None and funnel.weakest.stage.id == f.stage.id:
            tags += '<span class="tag weak">weakest</span>'
        first = " first" if previous_kind is not None and kind != previous_kind else ""
        previous_kind = kind
        rows.append(
            f'<tr class="selectable{first}" data-stage="{_e(f.stage.id)}" tabindex="0">'
            f'<td class="text">{_e(f.stage.name)} <span class="hint">{_e(f.stage.id)}</span> {tags}</td>'
            f"<td>{f.count}</td><td>{text.percent(f.share)}</td><td>{text.percent(f.conversion)}</td>"
            f"<td>{text.DASH if f.drop_off is None else f.drop_off}</td><td>{_e(text.money(f.amounts))}</td>"
            f"<td>{text.duration(f.median_seconds)}</td><td>{text.duration(f.p90_seconds)}</td></tr>"
        )
    heads = "".join(f"<th>{h}</th>" for h in head)
    return f'<table class="stages"><thead><tr>{heads}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _slices_table(report: FunnelReport) -> str:
    stage_ids = [f.stage.id for f in report.total.stages]
    heads = "".join(f"<th>{_e(s)}</th>" for s in stage_ids)
    rows = []
    for funnel in report.funnels():
        counts = funnel.counts()
        key = None if funnel.slice is None else ("" if funnel.slice.key is None else funnel.slice.key)
        label = "total" if funnel.slice is None else funnel.slice.label
        slice_attr = "" if key is None else f' data-slice="{_e(key)}"'
        label_attr = "" if key is None else f' data-slice-label="{_e(key)}"'
        cells = "".join(f'<td data-stage="{_e(s)}"{slice_attr}>{counts.get(s, 0)}</td>' for s in stage_ids)
        weakest = _e(funnel.weakest.stage.id) if funnel.weakest else text.DASH
        rows.append(f'<tr><td class="text"{label_attr}>{_e(label)}</td>{cells}<td>{funnel.won}</td>'
                    f"<td>{text.percent(funnel.win_rate)}</td><td class=\"text\">{weakest}</td></tr>")
    title = text.SLICE_TITLES.get(report.by or "", report.by)
    return (f"<h2>By {_e(title)}</h2><table class=\"slices\"><thead><tr><th>{_e(title)}</th>{heads}"
            f"<th>Won</th><th>Win rate</th><th>Weakest</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _channels_table(funnel: Funnel) -> str:
    rows = []
    for c in funnel.channels or []:
        rows.append(
            f'<tr><td class="text">{_e(c.name)} <span class="hint">{_e(c.source_id or "")}</span></td><td>{c.leads}</td>'
            f"<td>{c.qualified} ({text.percent(c.share(c.qualified))})</td>"
            f"<td>{c.converted} ({text.percent(c.share(c.converted))})</td>"
            f"<td>{c.junk} ({text.percent(c.share(c.junk))})</td></tr>"
        )
    return ("<h2>Lead quality by source</h2><table class=\"channels\"><thead><tr><th>Source</th><th>Leads</th>"
            f"<th>Qualified</th><th>Converted</th><th>Junk</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _cards_box(report: FunnelReport, figures: StageFigures) -> str:
    stage = figures.stage
    cards: CardList | None = report.cards.get(stage.id)
    head = f"<h3>{_e(stage.name)} <span class=\"hint\">{_e(stage.id)}</span></h3>"
    if cards is None:
        body = (f'<p class="hint">The page was written without card lists: '
                f"<code>b24sync report cards --stage {_e(stage.id)}</code> lists the {figures.count} card(s).</p>")
    elif not cards.total:
        body = '<p class="hint">No card is counted at this stage.</p>'
    else:
        shown = (f"{len(cards)} of {cards.total} cards (the most recently entered); "
                 f"<code>b24sync report cards --stage {_e(stage.id)}</code> lists all"
                 if cards.total > len(cards) else f"{cards.total} card(s)")
        rows = []
        for c in cards:
            amount = text.DASH if c.amount is None else text.money({c.currency: c.amount})
            title = _e(c.title or f"#{c.id}")
            link = f'<a href="{_e(c.url)}" target="_blank" rel="noopener noreferrer">{title}</a>' if c.url else title
            days = text.DASH if c.days_in_stage is None else f"{c.days_in_stage:.1f}"
            slice_attr = "" if c.slice_key is None else f' data-slice="{_e(c.slice_key)}"'
            rows.append(f"<tr{slice_attr}><td>{c.id}</td><td class=\"text\">{link}</td><td>{_e(amount)}</td>"
                        f'<td class="text">{_e(c.manager)}</td>'
                        f'<td class="text">{_e(text.moment(c.entered_at, report.period.timezone))}</td><td>{days}</td></tr>')
        body = (f'<p class="hint">{shown}</p><p class="hint slice-note" hidden></p>'
                '<table><thead><tr><th>ID</th><th class="text">Title</th><th>Amount</th><th class="text">Manager</th>'
                '<th class="text">Entered</th>'
                f"<th>Days in stage</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
    return f'<div class="cards" data-stage="{_e(stage.id)}" hidden>{head}{body}</div>'


def render_html(report: FunnelReport) -> str:
    """The whole report as one HTML document (UTF-8 text), readable offline with no network request."""
    funnel = report.total
    generated = text.moment(report.generated_at, report.period.timezone) if report.generated_at else ""
    meta = text.subtitle(report) + (f" · portal {report.portal}" if report.portal else "") + (
        f" · generated {generated}" if generated else "")
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(text.title(report))}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{_e(text.title(report))}</h1><p class=\"meta\">{_e(meta)}</p></header>",
        _summary(funnel),
        funnel_svg(funnel),
        '<p class="hint">Click a stage to list its cards.</p>',
        "<h2>Stages</h2>",
        _stage_table(funnel),
    ]
    if report.by is not None:
        parts.append(_slices_table(report))
    if funnel.channels is not None:
        parts.append(_channels_table(funnel))
    parts.append('<h2>Cards</h2><section id="cards"><p class="hint">Click a stage above.</p>')
    parts.extend(_cards_box(report, f) for f in funnel.stages)
    parts.append("</section>")
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)
