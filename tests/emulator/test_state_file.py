"""The ``--state`` file: JSON lines that round-trip a portal exactly and that nothing in them can execute."""

from __future__ import annotations

import base64
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from connector.emulator import new_portal
from connector.emulator.app import EmulatorApp
from connector.emulator.registry import invoke
from connector.emulator.state import Portal
from connector.emulator.statefile import FORMAT, VERSION, StateFileError


def state_of(portal: Portal) -> dict[str, Any]:
    """Every attribute a state file keeps."""
    return {k: v for k, v in vars(portal).items() if k not in ("lock", "_clock", "tz")}


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (1 is not True, a tuple is not a list) and the same key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN


@pytest.fixture
def busy_portal(seeded_portal: Any) -> Portal:
    """A seeded portal with every kind of state: queues, tokens, user fields added late and deleted, a legacy writer."""
    portal = seeded_portal(3, deals=150)
    portal.history_mode = "legacy"
    app = EmulatorApp(portal, secret="state-test")
    app.add_oauth_client("local.state", "secret", user_id=1)
    hook = {"auth": "oauth", "app": "app:local.state"}
    invoke(portal, "event.bind", {"event": "ONCRMDEALUPDATE", "event_type": "offline", "auth_connector": "mirror"}, **hook)
    invoke(portal, "event.bind", {"event": "ONCRMDEALADD", "event_type": "offline"}, **hook)
    invoke(portal, "crm.deal.userfield.add", {"fields": {"FIELD_NAME": "LATE", "USER_TYPE_ID": "string", "MULTIPLE": "Y"}})
    late = invoke(portal, "crm.deal.add", {"fields": {"TITLE": "после поля", "UF_CRM_LATE": ["a", "b"]}})
    invoke(portal, "crm.deal.update", {"id": late, "fields": {"STAGE_ID": "WON"}})
    invoke(portal, "crm.deal.update", {"id": late, "fields": {"STAGE_ID": "EXECUTING"}})  # legacy: the won row goes
    invoke(portal, "event.offline.get", {"clear": 0, "limit": 1}, **hook)  # a reservation
    doomed = invoke(portal, "crm.contact.userfield.add", {"fields": {"FIELD_NAME": "GONE", "USER_TYPE_ID": "integer"}})
    invoke(portal, "crm.contact.add", {"fields": {"NAME": "Ян", "UF_CRM_GONE": 5}})
    invoke(portal, "crm.contact.userfield.delete", {"id": doomed})
    invoke(portal, "crm.lead.delete", {"id": min(portal.records["lead"])})
    portal.extra["odd"] = {"tuple": (1, "two", None), 3: [1.5, float("nan"), True, {"~x": 1}], (1, 2): "key"}
    return portal


def test_a_saved_portal_loads_back_exactly(busy_portal: Portal, tmp_path: Path) -> None:
    path = tmp_path / "portal.state"
    busy_portal.save(path)
    loaded = Portal.load(path)
    assert same(state_of(loaded), state_of(busy_portal))
    assert loaded.tz == busy_portal.tz and loaded.lock is not busy_portal.lock


def test_the_loaded_portal_keeps_working(busy_portal: Portal, tmp_path: Path) -> None:
    busy_portal.save(tmp_path / "portal.state")
    loaded = Portal.load(tmp_path / "portal.state")
    deal = invoke(loaded, "crm.deal.add", {"fields": {"TITLE": "после загрузки"}})
    assert deal == max(busy_portal.records["deal"]) + 1  # sequences survived
    page = invoke(loaded, "crm.deal.list", {"filter": {">ID": deal - 1}, "start": -1})
    assert [row["ID"] for row in page] == [str(deal)]


def test_equal_texts_share_one_object_after_loading(busy_portal: Portal, tmp_path: Path) -> None:
    busy_portal.save(tmp_path / "portal.state")
    loaded = Portal.load(tmp_path / "portal.state")
    stages = {id(deal["STAGE_ID"]) for deal in loaded.records["deal"].values() if deal["STAGE_ID"] == "WON"}
    assert len(stages) == 1


def test_the_file_is_json_lines_with_a_format_and_version(busy_portal: Portal, tmp_path: Path) -> None:
    path = tmp_path / "portal.state"
    busy_portal.save(path)
    lines = path.read_bytes().splitlines()
    assert json.loads(lines[0]) == {"format": FORMAT, "version": VERSION}
    parts = [json.loads(line)["part"] for line in lines[1:]]
    assert parts[0] == "strings" and parts[-2:] == ["portal", "end"]
    assert {"records", "history"} <= set(parts)


def test_saving_replaces_the_file_atomically(busy_portal: Portal, tmp_path: Path) -> None:
    path = tmp_path / "portal.state"
    path.write_text("old")
    busy_portal.save(path)
    assert Portal.load(path).records["deal"].keys() == busy_portal.records["deal"].keys()
    assert [p.name for p in tmp_path.iterdir()] == ["portal.state"]  # no temporary file left behind


class Planted:
    """Unpickling this would create ``path``: proof that loading ran code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (str(self.path), "w"))


def crafted_pickle(tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / "crafted.state"
    path.write_bytes(pickle.dumps({"records": Planted(marker)}))
    return path


def crafted_lines(tmp_path: Path, *lines: Any) -> Path:
    path = tmp_path / "crafted.state"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


HEADER = {"format": FORMAT, "version": VERSION}
STRINGS = {"part": "strings", "values": [None, "x"]}
END = {"part": "end", "parts": 1}

BAD_FILES: list[tuple[str, Any, str]] = [
    ("empty", lambda tmp: crafted_lines(tmp, ""), "not a b24sync emulator state file"),
    ("binary", lambda tmp: (tmp / "crafted.state", (tmp / "crafted.state").write_bytes(os.urandom(64)))[0],
     "not a b24sync emulator state file"),
    ("other-json", lambda tmp: crafted_lines(tmp, {"format": "something else"}), "not a b24sync emulator state file"),
    ("newer-version", lambda tmp: crafted_lines(tmp, {"format": FORMAT, "version": 99}, STRINGS, END),
     "state file version 99"),
    ("cut-short", lambda tmp: crafted_lines(tmp, HEADER, STRINGS), "ends before its last part"),
    ("wrong-count", lambda tmp: crafted_lines(tmp, HEADER, STRINGS, {"part": "end", "parts": 5}), "the file says 5"),
    ("deep-nesting", lambda tmp: crafted_lines(tmp, HEADER, '{"part": "portal", "state": ' + "[" * 100_000 + "]" * 100_000 + "}"),
     "not a readable"),
    ("unknown-part", lambda tmp: crafted_lines(tmp, HEADER, {"part": "code", "python": "import os"}), "unknown part 'code'"),
    ("list-as-key", lambda tmp: crafted_lines(tmp, HEADER, {"part": "portal", "state": {"x": {"~map": [[[1], 2]]}}}, END),
     "not a readable"),
    ("bad-packed-ints", lambda tmp: crafted_lines(tmp, HEADER, STRINGS, {"part": "records", "entity": "deal", "ids": "!!!",
                                                                          "shapes": [], "of": None}, END), "not a readable"),
    ("rows-before-strings", lambda tmp: crafted_lines(tmp, HEADER, {"part": "history", "type_id": 2, "shapes": [], "of": None}),
     "before the string table"),
    ("ids-and-rows-differ", lambda tmp: crafted_lines(
        tmp, HEADER, STRINGS, {"part": "records", "entity": "deal", "ids": base64.b64encode(bytes(8)).decode(),
                               "shapes": [], "of": None}, END), "do not match its rows"),
    ("bad-timezone", lambda tmp: crafted_lines(tmp, HEADER, STRINGS, {"part": "portal", "state": {"tz_text": "+99:00"}},
                                               {"part": "end", "parts": 2}), "timezone"),
]


@pytest.mark.parametrize("make, message", [(m, e) for _, m, e in BAD_FILES], ids=[name for name, _, _ in BAD_FILES])
def test_a_file_that_is_not_a_whole_state_file_is_refused_clearly(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(StateFileError, match=message) as caught:
        Portal.load(path)
    assert isinstance(caught.value, ValueError)
    assert len(str(caught.value)) < 400  # one readable line, not a dump of the file


def test_a_crafted_pickle_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = crafted_pickle(tmp_path, marker)
    with pytest.raises(StateFileError, match="old pickled state cannot be loaded"):
        Portal.load(path)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the payload is real: unpickling it does make the file
    assert marker.exists()


def test_new_portal_round_trips_with_current_history(tmp_path: Path) -> None:
    portal = new_portal("+05:00")
    portal.save(tmp_path / "fresh.state")
    loaded = Portal.load(tmp_path / "fresh.state")
    assert same(state_of(loaded), state_of(portal))
    assert loaded.history_mode == "current" and loaded.tz_text == "+05:00"
