"""The emulated portal's state: every record, dictionary and queue, behind one lock.

``Portal`` is plain data plus a clock; the rules live in the method modules that change it.
It can be saved to and loaded from a JSON-lines file (``--state PATH``, ``statefile.py``) so a
portal survives restarts.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import threading
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterator

from connector.catalog import DEAL, ENTITY_TYPE_IDS, LEAD
from connector.emulator import statefile
from connector.envelope import parse_offset


class Portal:
    """All state of one emulated Bitrix24 portal.

    Containers (each owned by the module named in brackets):

    - ``records[entity][id] -> dict``: leads, deals, contacts, companies, keyed by int ID,
      values by their legacy UPPER_CASE field names [records/write.py]
    - ``statuses[id] -> dict``: crm.status rows (stages of every pipeline, lead statuses, SOURCE,
      and the other dictionaries), keyed by the numeric status ``ID`` [methods/pipelines.py]
    - ``categories[id] -> dict``: deal pipelines, id 0 is the default one [methods/pipelines.py]
    - ``history[entity_type_id] -> list[dict]``: stage history rows in ID order, written as
      ``history_mode`` says [records/history.py]
    - ``userfields[entity][id] -> dict``: UF_CRM_* field definitions [methods/userfields.py]
    - ``users[id] -> dict``: employees for user.get [methods/users.py]
    - ``event_handlers``, ``offline_events``: event.* bindings and the offline queue [methods/events.py]
    - ``oauth``: apps, access and refresh tokens [app.py]
    """

    def __init__(self, tz: str = "+03:00", clock: Callable[[], float] | None = None):
        self.lock = threading.RLock()
        self.tz_text = tz
        self.tz: timezone = parse_offset(tz)
        self._clock = clock
        self.seq: dict[str, int] = {}
        self.records: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in ENTITY_TYPE_IDS}
        self.statuses: dict[int, dict[str, Any]] = {}
        self.categories: dict[int, dict[str, Any]] = {}
        self.history: dict[int, list[dict[str, Any]]] = {LEAD: [], DEAL: []}
        self.userfields: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in ENTITY_TYPE_IDS}
        self.users: dict[int, dict[str, Any]] = {}
        self.event_handlers: list[dict[str, Any]] = []
        self.offline_events: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.oauth: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}  # room for modules that need more state
        self.history_mode = "current"  # how stage history is written: "current" or "legacy" (records/history.py)

    # ------------------------------------------------------------------ clock

    @property
    def clock(self) -> Callable[[], float]:
        """Unix time source; the seed generator replaces it to write a year of history."""
        return self._clock or time.time

    @clock.setter
    def clock(self, value: Callable[[], float] | None) -> None:
        self._clock = value

    def now(self) -> datetime:
        """Current portal time as an aware datetime in the portal's offset."""
        return datetime.fromtimestamp(self.clock(), self.tz).replace(microsecond=0)

    def now_text(self) -> str:
        """Current portal time as Bitrix24 prints it: ``2026-11-26T12:00:00+03:00``."""
        return iso_seconds((self._clock or time.time)(), self.tz)

    def format_time(self, moment: datetime) -> str:
        """Any aware datetime in the portal's offset, as Bitrix24 prints it."""
        return moment.astimezone(self.tz).replace(microsecond=0).isoformat()

    # ------------------------------------------------------------------ ids

    def next_id(self, kind: str) -> int:
        """The next integer ID of a sequence (records, statuses, history rows...)."""
        with self.lock:
            value = self.seq.get(kind, 0) + 1
            self.seq[kind] = value
            return value

    # ------------------------------------------------------------------ events

    def emit(
        self, event: str, fields: dict[str, Any], skip_connector: str | None = None, *, user_id: int = 1
    ) -> None:
        """Record a CRM event (e.g. ``ONCRMDEALUPDATE`` with ``{"ID": 5}``) made by ``user_id``.

        Every offline binding of the event gets one queue record per object; a later change of
        the same object replaces the earlier record (latest change wins), as the real queue does.
        ``skip_connector`` is the ``auth_connector`` key the modifying call was made with: bindings
        with that key get no record (an app's own writes do not come back to it); others still do.
        ``user_id`` (the calling user; the administrator by default) goes to ``EVENT_ADDITIONAL``.
        """
        with self.lock:
            for binding in self.event_handlers:
                if binding.get("offline") and binding["event"] == event.upper():
                    connector = binding.get("auth_connector") or ""
                    if skip_connector and connector == skip_connector:
                        continue
                    obj_key = (connector, _object_family(event), str(fields.get("ID")))
                    self.offline_events.pop(obj_key, None)  # latest change of an object wins
                    self.offline_events[obj_key] = {
                        "ID": self.next_id("offline_event"),
                        "TIMESTAMP_X": self.now_text(),
                        "EVENT_NAME": event.upper(),
                        "EVENT_DATA": {"FIELDS": dict(fields)},
                        "EVENT_ADDITIONAL": {"user_id": str(user_id)},
                        "MESSAGE_ID": f"{event.upper()}_{fields.get('ID')}_{self.seq['offline_event']}",
                        "PROCESS_ID": None,
                        "ERROR": 0,
                        "AUTH_CONNECTOR": connector,
                    }

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state atomically as a JSON-lines state file (see ``statefile.py``)."""
        with self.lock, cyclic_gc_paused():  # columns of a big state are millions of objects, no cycles
            statefile.write(path, {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "Portal":
        """Read a state written by ``save``; ``statefile.StateFileError`` (a ValueError) when it is not one.

        Only JSON is read: a crafted file cannot run code, and an old pickled state is refused.
        """
        with cyclic_gc_paused():  # a big state is millions of objects, no cycles
            data = statefile.read(path)
        try:
            portal = cls(str(data.get("tz_text", "+03:00")))
        except ValueError:
            raise statefile.StateFileError(f"{path}: the portal's timezone {data.get('tz_text')!r} is not an offset") from None
        portal.__dict__.update({k: v for k, v in data.items() if k not in _NOT_STATE})
        return portal


_NOT_STATE = ("lock", "_clock", "tz")  # rebuilt by the constructor, never stored


@contextlib.contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many objects that form no cycles.

    Reference counting still frees everything; collections would only rescan the growing heap
    (seeding a portal or loading a saved one). The previous setting is restored afterwards.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


# Formatting portal time is part of every CRM write; these two caches let ``iso_seconds`` skip
# building a datetime: tz -> (offset seconds, "+03:00") or None, and local hours since 1970 -> "2026-03-01T10:".
_OFFSETS: dict[Any, tuple[int, str] | None] = {}
_HOURS: dict[int, str] = {}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_LAST_SAFE = 250_000_000_000  # ~ year 9892: well inside what date can print in any offset


def iso_seconds(moment: float, tz: timezone) -> str:
    """``datetime.fromtimestamp(moment, tz).replace(microsecond=0).isoformat()``, computed faster.

    The fast path covers whole-second offsets, moments from 1970 on, and fractions that cannot
    round up into the next second (fromtimestamp rounds to microseconds first); anything else
    takes the datetime path, so the text is always the same.
    """
    offset = _OFFSETS.get(tz, False)
    if offset is False:
        delta = tz.utcoffset(None)
        whole_seconds = delta is not None and delta % timedelta(seconds=1) == timedelta(0)
        offset = (int(delta.total_seconds()), datetime(2000, 1, 1, tzinfo=tz).isoformat()[19:]) if whole_seconds else None
        _OFFSETS[tz] = offset
    kind = moment.__class__
    if offset is not None and (kind is float or kind is int) and 0 <= moment < _LAST_SAFE:
        whole = math.floor(moment)
        if moment - whole < 0.999999:
            hours, second = divmod(whole + offset[0], 3600)
            prefix = _HOURS.get(hours)
            if prefix is None:
                if len(_HOURS) > 100_000:
                    _HOURS.clear()
                day, hour = divmod(hours, 24)
                prefix = _HOURS[hours] = f"{date.fromordinal(_EPOCH_ORDINAL + day).isoformat()}T{hour:02d}:"
            minute, second = divmod(second, 60)
            return f"{prefix}{minute:02d}:{second:02d}{offset[1]}"
    return datetime.fromtimestamp(moment, tz).isoformat(timespec="seconds")


def _object_family(event: str) -> str:
    """ONCRMDEALUPDATE -> DEAL: the object an event is about (the queue keeps one record per object)."""
    name = event.upper().removeprefix("ONCRM")
    for suffix in ("ADD", "UPDATE", "DELETE", "MOVETOCATEGORY"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
