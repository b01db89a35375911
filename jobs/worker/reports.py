"""The worker's report files: HTML and CSV of every deal pipeline's funnel and of the lead funnel.

Each goes to ``<name>-<portal date>.<ext>`` and, as the latest, to ``<name>.<ext>`` (``deal-funnel-sales.html``,
``lead-funnel-2026-12-01.csv``); every file is written through a temporary file, so none is ever half written.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

CARDS_PER_STAGE = 50  # the HTML page's drill-down lists this many cards per stage
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import: report files get the usual 0666 & ~umask, not mkstemp's 0600


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def funnels(engine: Any) -> list[tuple[str, str, int | None]]:
    """``(file name, entity, pipeline id)`` of every report: each live deal pipeline, then the leads."""
    import sqlalchemy as sa

    from mappings.tables import crm_deal_category as c

    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.c.id, c.c.origin_id).where(c.c.deleted_at.is_(None)).order_by(c.c.sort, c.c.id)).all()
    found = [(f"deal-funnel-{_slug(int(row.id), row.origin_id)}", "deal", int(row.id)) for row in rows]
    if not any(pipeline == 0 for _, _, pipeline in found):
        found.insert(0, ("deal-funnel-default", "deal", 0))
    return [*found, ("lead-funnel", "lead", None)]


def _slug(pipeline_id: int, key: str | None) -> str:
    if pipeline_id == 0:
        return "default"
    text = re.sub(r"[^A-Za-z0-9_-]+", "-", key or "").strip("-")
    return text or f"pipeline-{pipeline_id}"


def write_reports(engine: Any, folder: Path, *, now: datetime | None = None, stop: threading.Event | None = None,
                  cards_per_stage: int = CARDS_PER_STAGE) -> tuple[list[Path], list[str]]:
    """Write every funnel's HTML and CSV into ``folder``; returns (files written, problems: one per funnel that failed).

    The date in the names is the portal's (its offset as the mirror recorded it). A stop request
    ends the work between two funnels.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from jobs.errors import UserError
    from jobs.report import funnel, render_csv, render_html
    from jobs.worker.schedule import cron_timezone
    from mappings import db

    now = now or datetime.now(timezone.utc)
    folder.mkdir(parents=True, exist_ok=True)
    day = now.astimezone(cron_timezone(engine)).date().isoformat()
    written: list[Path] = []
    problems: list[str] = []
    try:
        todo = funnels(engine)
    except SQLAlchemyError as exc:
        return written, [str(db.unreachable(engine, exc))]
    for name, entity, pipeline in todo:
        if stop is not None and stop.is_set():
            break
        try:
            report = funnel(engine, entity=entity, pipeline=pipeline, cards_per_stage=cards_per_stage, now=now)
        except UserError as exc:
            problems.append(f"{name}: {exc}")
            continue
        except SQLAlchemyError as exc:
            problems.append(f"{name}: {db.unreachable(engine, exc)}")
            continue
        for ext, text in (("html", render_html(report)), ("csv", render_csv(report))):
            for path in (folder / f"{name}-{day}.{ext}", folder / f"{name}.{ext}"):
                atomic_write(path, text)
                written.append(path)
    return written, problems
