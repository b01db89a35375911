"""list_all: every record once, in ID order, 2,500 rows per request, whatever the shape, filter or churn."""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import replace
from typing import Any

import pytest

from connector import errors
from connector.catalog import ListShape
from connector.client import RetryPolicy
from connector.envelope import BatchParts, Reply
from connector.keyset import PAGE, KeysetExport, OffsetPages, Segment

from .conftest import FailFirstCommand

SEED_DEALS = 1200


@pytest.fixture
def seeded(make_emulator):
    """A seeded portal of about 1,200 deals over HTTP with generous limits."""
    return make_emulator(seed=11, deals=SEED_DEALS)


def offset_pages(portal, method, params, rows_of=lambda r: r):
    """Ground truth on a static portal: the method's own offset paging (``start=0, 50, ...``), in-process."""
    from connector.emulator.registry import Call, dispatch

    out, start = [], 0
    while True:
        with portal.lock:
            page = dispatch(Call(portal, method, {**params, "start": start}))
        out.extend(rows_of(page.result))
        if page.next is None:
            return out
        start = page.next


def plain(value):
    """JSON-equal form: PHP prints an empty object as ``[]``, so compare empty containers as equal."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()} if value else []
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def test_exports_every_deal_once_in_id_order_with_few_requests(seeded, client_for):
    client = client_for(seeded)
    seeded.app.reset_stats()
    ids = [int(row["ID"]) for row in client.list_all("crm.deal.list", select=["ID", "TITLE"])]
    assert ids == sorted(seeded.portal.records["deal"])
    stats = seeded.stats()
    # one request for the ceiling and the first page, then 2,500 rows per request
    assert stats["requests_total"] == 1 + -(-(len(ids) - PAGE) // (PAGE * PAGE))
    assert stats["by_method"]["crm.deal.list"] <= len(ids) // PAGE + 2
    assert stats["rejected_503"] == 0


@pytest.mark.parametrize("strategy", ["chain", "window"])
def test_both_strategies_agree(seeded, client_for, strategy):
    client = client_for(seeded)
    rows = list(client.list_all("crm.deal.list", select=["ID", "STAGE_ID"], strategy=strategy))
    assert [int(r["ID"]) for r in rows] == sorted(seeded.portal.records["deal"])
    assert all(set(r) == {"ID", "STAGE_ID"} for r in rows)


@pytest.mark.parametrize(
    ("method", "entity_type_id", "rows_of", "id_field"),
    [
        ("crm.deal.list", None, lambda r: r, "ID"),
        ("crm.lead.list", None, lambda r: r, "ID"),
        ("crm.contact.list", None, lambda r: r, "ID"),
        ("crm.company.list", None, lambda r: r, "ID"),
        ("crm.item.list", 2, lambda r: r["items"], "id"),
        ("crm.item.list", 1, lambda r: r["items"], "id"),
        ("crm.stagehistory.list", 2, lambda r: r["items"], "ID"),
        ("crm.stagehistory.list", 1, lambda r: r["items"], "ID"),
        ("user.get", None, lambda r: r, "ID"),
    ],
    ids=["deals", "leads", "contacts", "companies", "items-deal", "items-lead", "history-deal", "history-lead", "users"],
)
def test_every_list_shape_matches_offset_paging(seeded, client_for, method, entity_type_id, rows_of, id_field):
    client = client_for(seeded)
    base: dict[str, Any] = {"entityTypeId": entity_type_id} if entity_type_id else {}
    order = {"sort": id_field, "order": "ASC"} if method == "user.get" else {"order": {id_field: "ASC"}}
    expected = offset_pages(seeded.portal, method, {**base, **order}, rows_of)
    got = list(client.list_all(method, entity_type_id=entity_type_id))
    assert [int(r[id_field]) for r in got] == [int(r[id_field]) for r in expected]
    assert plain(got) == plain(expected)  # same rows, same values and types


def test_a_users_filter_and_select_are_kept_and_its_id_bounds_combined(seeded, client_for):
    client = client_for(seeded)
    flt = {">=ID": 100, "<ID": 400, "@STAGE_ID": ["WON", "LOSE"], ">OPPORTUNITY": 1000}
    rows = list(client.list_all("crm.deal.list", filter=flt, select=["STAGE_ID", "OPPORTUNITY"]))
    expected = [
        d["ID"] for i, d in sorted(seeded.portal.records["deal"].items())
        if 100 <= i < 400 and d["STAGE_ID"] in ("WON", "LOSE") and float(d["OPPORTUNITY"] or 0) > 1000
    ]
    assert expected and [r["ID"] for r in rows] == expected
    assert all(set(r) == {"ID", "STAGE_ID", "OPPORTUNITY"} for r in rows)  # ID added to the select


def test_keyset_filter_keys_are_recognised_in_any_case():
    export = KeysetExport("crm.deal.list", {">id": "7", ">=ID": 5, "<=ID": 90, "TITLE": "x"}, ["TITLE"])
    assert export.cursor == 7
    assert export.page(7)["filter"] == {"TITLE": "x", "<=ID": 90, ">ID": 7}
    assert export.select == ["TITLE", "ID"]
    with pytest.raises(ValueError):
        KeysetExport("crm.deal.list", {">ID": "abc"})


def test_references_follow_the_shape():
    assert KeysetExport("crm.deal.list").reference("p3") == "$result[p3][49][ID]"
    assert KeysetExport("crm.item.list", entity_type_id=2).reference("p3") == "$result[p3][items][49][id]"
    assert KeysetExport("crm.stagehistory.list", entity_type_id=1).reference("p0") == "$result[p0][items][49][ID]"
    users = KeysetExport("user.get").page(5)
    assert users["sort"] == "ID" and users["order"] == "ASC" and users["filter"] == {">ID": 5}


def _history_method(register_method, name, honour_order=True):
    """A list method over deal stage history with string IDs (as older portals send them)."""
    from connector.emulator.registry import Result

    def handler(call):
        after = int(call.params.get("filter", {}).get(">ID") or 0)
        rows = [r for r in call.portal.history[2] if r["ID"] > after]
        if honour_order and str(call.params.get("order", {}).get("ID", "ASC")).upper() == "DESC":
            rows = rows[::-1]
        return Result({"items": [{k: str(v) for k, v in r.items()} for r in rows[:PAGE]]})

    register_method(name, handler)


def test_string_ids_in_an_items_shape(seeded, client_for, register_method):
    _history_method(register_method, "test.history.list")
    client = client_for(seeded)
    rows = list(client.list_all("test.history.list", shape=ListShape("items", "ID")))
    assert [r["ID"] for r in rows] == [str(r["ID"]) for r in seeded.portal.history[2]]


@pytest.mark.parametrize("strategy", ["chain", "window"])
def test_a_method_that_ignores_the_order_does_not_end_the_export_early(seeded, client_for, register_method, strategy):
    _history_method(register_method, "test.unordered.list", honour_order=False)
    client = client_for(seeded)
    rows = list(client.list_all("test.unordered.list", shape=ListShape("items", "ID"), strategy=strategy))
    assert [r["ID"] for r in rows] == [str(r["ID"]) for r in seeded.portal.history[2]]


class InFlight:
    """Counts how many requests a transport serves at the same time."""

    def __init__(self, inner):
        self.inner, self.fetch_token, self.close = inner, inner.fetch_token, inner.close
        self.now = self.most = 0
        self.lock = threading.Lock()

    def send(self, method, params, auth, **options):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self.inner.send(method, params, auth, **options)
        finally:
            with self.lock:
                self.now -= 1


@pytest.mark.parametrize("flt", [None, {"CATEGORY_ID": 0}], ids=["all", "sparse"])
def test_big_exports_fetch_segments_concurrently_and_still_yield_in_order(seeded, client_for, flt):
    client = client_for(seeded)
    client.transport = InFlight(client.transport)
    rows = list(client.list_all("crm.deal.list", filter=flt, select=["ID", "CATEGORY_ID"], batch_size=4, concurrency=3))
    expected = [i for i, d in sorted(seeded.portal.records["deal"].items()) if flt is None or d["CATEGORY_ID"] == "0"]
    assert [int(r["ID"]) for r in rows] == expected
    assert client.transport.most >= 2  # segments really overlapped
    assert seeded.stats()["requests_total"] <= 2 * (len(expected) // (4 * PAGE) + 3)  # the density estimate keeps segments full


def test_a_small_export_stays_sequential(seeded, client_for):
    client = client_for(seeded)
    client.transport = InFlight(client.transport)
    assert len(list(client.list_all("crm.deal.list", select=["ID"], concurrency=3))) == len(seeded.portal.records["deal"])
    assert client.transport.most == 1 and seeded.stats()["requests_total"] == 2


def test_export_is_lazy(seeded, client_for):
    client = client_for(seeded)
    seeded.app.reset_stats()
    first = list(itertools.islice(client.list_all("crm.deal.list", select=["ID"]), 10))
    assert len(first) == 10
    assert seeded.stats()["requests_total"] == 1  # nothing more is fetched before it is needed


def test_empty_result_costs_one_request(emulator, client_for):
    client = client_for(emulator)
    assert list(client.list_all("crm.deal.list")) == []
    assert emulator.stats()["requests_total"] == 1


class ShortPageTransport:
    """Wraps a transport; drops the tail of one chained page, as a misbehaving portal might."""

    def __init__(self, inner, command="p3", keep=30):
        self.inner, self.command, self.keep, self.done = inner, command, keep, False
        self.fetch_token, self.close = inner.fetch_token, inner.close

    def send(self, method, params, auth, **options):
        reply = self.inner.send(method, params, auth, **options)
        results = reply.result.get("result") if method == "batch" and isinstance(reply.result, dict) else None
        if not self.done and isinstance(results, dict) and self.command in results:
            self.done = True
            results = {**results, self.command: results[self.command][: self.keep]}
            return replace(reply, result={**reply.result, "result": results})
        return reply


def test_a_short_page_in_the_middle_of_a_chain_skips_nothing(seeded, client_for):
    """The sequential chain does not trust a short page below the ceiling (concurrent segments do, as the docs' recipe)."""
    client = client_for(seeded)
    client.transport = ShortPageTransport(client.transport, "p3")
    ids = [int(r["ID"]) for r in client.list_all("crm.deal.list", select=["ID"], concurrency=1)]
    assert client.transport.done
    assert ids == sorted(seeded.portal.records["deal"])  # resumed from the cursor, nothing repeated


def test_pages_blocked_by_operating_time_inside_a_batch_resume_after_the_reset(make_emulator, client_for, fake_time):
    server = make_emulator(seed=11, deals=SEED_DEALS, operating_budget=0.05, clock=fake_time)
    client = client_for(server)
    ids = [int(r["ID"]) for r in client.list_all("crm.deal.list", select=["ID"])]
    assert ids == sorted(server.portal.records["deal"])
    assert server.stats()["rejected_429"] >= 1
    assert max(fake_time.sleeps) >= 590  # waited for the method's reset, then went on


def test_a_method_blocked_inside_a_batch_is_not_called_again_before_its_reset(make_emulator, client_for, fake_time):
    """The emulator's inner 429 carries no reset time: the one of the method's earlier pages is used."""
    server = make_emulator(seed=11, deals=SEED_DEALS, operating_budget=0.05, clock=fake_time)
    client = client_for(server)
    ids = [int(r["ID"]) for r in client.list_all("crm.deal.list", select=["ID"], concurrency=1)]
    assert ids == sorted(server.portal.records["deal"])
    assert server.stats()["rejected_429"] == 1


def test_a_fatal_page_error_names_the_command(seeded, client_for):
    client = client_for(seeded)
    with pytest.raises(errors.BatchCommandError) as info:
        list(client.list_all("crm.stagehistory.list", filter={"NO_SUCH_FIELD": 1}, entity_type_id=2))
    assert info.value.command == "top" and isinstance(info.value.error, errors.BadRequest)


# ---------------------------------------------------------------- churn


class Churn:
    """Adds, updates and deletes deals from another thread, one step per request of the export."""

    def __init__(self, client, portal, seed=5):
        self.client, self.portal = client, portal
        self.rng = random.Random(seed)
        self.go, self.stepped = threading.Semaphore(0), threading.Semaphore(0)
        self.stop = False
        self.deleted: set[int] = set()
        self.added: set[int] = set()
        self.updated = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while True:
            self.go.acquire()
            if self.stop:
                return
            try:
                self.step()
            except BaseException as exc:  # noqa: BLE001 (reported by the test)
                self.errors.append(exc)
            self.stepped.release()

    def step(self):
        live = sorted(self.portal.records["deal"])
        victims = self.rng.sample(live[:-5], 6) + live[-2:]  # anywhere, and the very last ones
        for deal_id in victims:
            self.client.call("crm.deal.delete", {"id": deal_id})
            self.deleted.add(deal_id)
        for deal_id in self.rng.sample([i for i in live if i not in self.deleted], 10):
            self.client.call("crm.deal.update", {"id": deal_id, "fields": {"TITLE": f"изменена {self.rng.random()}", "OPPORTUNITY": 5}})
            self.updated += 1
        for _ in range(5):
            self.added.add(int(self.client.result("crm.deal.add", {"fields": {"TITLE": "новая"}})))


class LockstepTransport:
    """Before each export request after the first, lets the churn thread do one step and waits for it."""

    def __init__(self, inner, churn):
        self.inner, self.churn, self.requests = inner, churn, 0
        self.fetch_token, self.close = inner.fetch_token, inner.close
        self.lock = threading.Lock()

    def send(self, method, params, auth, **options):
        with self.lock:  # export threads take turns with the churn thread
            self.requests += 1
            if self.requests > 1:
                self.churn.go.release()
                assert self.churn.stepped.acquire(timeout=30)
        return self.inner.send(method, params, auth, **options)


@pytest.mark.parametrize(
    ("strategy", "batch_size", "concurrency"),
    [("chain", 3, 1), ("chain", 50, 1), ("window", 3, 1), ("window", 50, 1), ("chain", 3, 3), ("chain", 7, 3)],
)
def test_churn_during_export_never_repeats_or_skips_a_surviving_deal(seeded, client_for, strategy, batch_size, concurrency):
    portal = seeded.portal
    before = set(portal.records["deal"])
    exporter, writer = client_for(seeded), client_for(seeded)
    churn = Churn(writer, portal)
    exporter.transport = LockstepTransport(exporter.transport, churn)
    churn.thread.start()
    try:
        rows = list(exporter.list_all("crm.deal.list", select=["ID", "TITLE"], strategy=strategy, batch_size=batch_size, concurrency=concurrency))
    finally:
        churn.stop = True
        churn.go.release()
        churn.thread.join(10)
    assert churn.errors == []
    assert exporter.transport.requests > 1 and churn.deleted and churn.added and churn.updated
    ids = [int(r["ID"]) for r in rows]
    assert len(ids) == len(set(ids)), "a deal came twice"
    survivors = before - churn.deleted
    assert survivors <= set(ids), f"missed {sorted(survivors - set(ids))[:10]}"
    assert set(ids) <= before | churn.added  # nothing invented
    assert ids == sorted(ids)


def test_churn_from_a_free_running_thread(seeded, client_for):
    """No lockstep: a writer thread hammers the portal while the export runs in small batches."""
    portal = seeded.portal
    before = set(portal.records["deal"])
    exporter, writer = client_for(seeded), client_for(seeded)
    churn = Churn(writer, portal, seed=9)
    done = threading.Event()

    def hammer():
        while not done.is_set():
            try:
                churn.step()
            except BaseException as exc:  # noqa: BLE001
                churn.errors.append(exc)
                return

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        ids = [int(r["ID"]) for r in exporter.list_all("crm.deal.list", select=["ID"], batch_size=2, concurrency=4)]
    finally:
        done.set()
        thread.join(10)
    assert churn.errors == []
    assert len(ids) == len(set(ids))
    assert before - churn.deleted <= set(ids)


def test_list_all_rejects_unknown_strategy(emulator, client_for):
    with pytest.raises(ValueError):
        list(client_for(emulator).list_all("crm.deal.list", strategy="offset"))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_retry_policy_in_list_all_is_bounded(seeded, client_for, concurrency):
    """A page that keeps failing with a retriable error ends the export after the allowed attempts."""
    client = client_for(seeded, retry=RetryPolicy(attempts=3, base=0.01))

    client.transport = FailFirstCommand(client.transport, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"})
    with pytest.raises(errors.BatchCommandError) as info:
        list(client.list_all("crm.deal.list", concurrency=concurrency))
    assert isinstance(info.value.error, errors.ServerError)


# ---------------------------------------------------------------- count, ids, and a ceiling the caller knows


def test_count_is_one_counted_page(seeded, client_for):
    client = client_for(seeded)
    seeded.app.reset_stats()
    deals = seeded.portal.records["deal"]
    assert client.count("crm.deal.list") == len(deals)
    assert client.count("crm.deal.list", {"CATEGORY_ID": 0}) == sum(d["CATEGORY_ID"] == "0" for d in deals.values())
    assert client.count("crm.item.list", {">id": 100}, entity_type_id=2) == sum(i > 100 for i in deals)
    assert seeded.stats()["requests_total"] == 3


def test_ids_are_every_matching_id_in_order(seeded, client_for):
    client = client_for(seeded)
    deals = seeded.portal.records["deal"]
    assert list(client.ids("crm.deal.list", {"CATEGORY_ID": 0})) == [i for i, d in sorted(deals.items()) if d["CATEGORY_ID"] == "0"]
    assert list(client.ids("crm.item.list", {"<=id": 300}, entity_type_id=2)) == [i for i in sorted(deals) if i <= 300]


class Recording:
    """Wraps a transport; keeps the ``cmd`` of every batch it sends."""

    def __init__(self, inner):
        self.inner, self.fetch_token, self.close = inner, inner.fetch_token, inner.close
        self.batches: list[dict[str, str]] = []

    def send(self, method, params, auth, **options):
        if method == "batch":
            self.batches.append(dict(params["cmd"]))
        return self.inner.send(method, params, auth, **options)


def _probe_and_first_page(client, method, flt):
    """What the mirror's sync does for each entity: the probe and the first page in one batch of its own."""
    parts = client.batch({
        "top": (method, {"filter": flt, "order": {"ID": "DESC"}, "select": ["ID"], "start": -1}),
        "p0": (method, {"filter": {**flt, ">ID": 0}, "order": {"ID": "ASC"}, "select": ["ID"], "start": -1}),
    })
    return (int(parts["top"][0]["ID"]) if parts["top"] else 0), parts["p0"]


def test_a_known_ceiling_spends_no_probe_and_continues_in_one_chained_batch(make_emulator, client_for):
    """About 1,000 changed deals spread over 4,000: the probe, the first page and the rest cost two requests."""
    server = make_emulator(seed=11, deals=4000)
    client = client_for(server)
    deals = server.portal.records["deal"]
    since = max(d["DATE_MODIFY"] for d in deals.values())
    changed = sorted(random.Random(3).sample(sorted(deals), 1000))
    client.batch([("crm.deal.update", {"id": i, "fields": {"COMMENTS": "изменена"}}) for i in changed])
    server.app.reset_stats()
    flt = {">DATE_MODIFY": since}
    top, first = _probe_and_first_page(client, "crm.deal.list", flt)
    assert top == changed[-1] and len(first) == PAGE
    client.transport = sent = Recording(client.transport)
    rest = list(client.list_all("crm.deal.list", {**flt, ">ID": int(first[-1]["ID"])}, ["ID"], ceiling=top))
    assert [int(r["ID"]) for r in first + rest] == changed
    assert server.stats()["requests_total"] == 2
    (continuation,) = sent.batches
    assert len(continuation) == 50 and not any("DESC" in text for text in continuation.values())  # no probe


def test_a_ceiling_at_the_cursor_costs_nothing(emulator, client_for):
    client = client_for(emulator)
    assert list(client.list_all("crm.deal.list", {">ID": 70}, ceiling=70)) == []
    assert emulator.stats()["requests_total"] == 0


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_known_ceiling_still_exports_everything_below_it(seeded, client_for, concurrency):
    client = client_for(seeded)
    ids = sorted(seeded.portal.records["deal"])
    top = ids[-100]
    flt = {">ID": ids[10], "<=ID": top}
    got = [int(r["ID"]) for r in client.list_all("crm.deal.list", flt, ["ID"], ceiling=top, batch_size=3, concurrency=concurrency)]
    assert got == [i for i in ids if ids[10] < i <= top]


# ---------------------------------------------------------------- the paginators on their own


def _parts(results=None, errors_=None):
    return BatchParts(results=results or {}, errors=errors_ or {})


def test_a_bad_row_refuses_its_whole_page_and_the_cursor_stays():
    export = KeysetExport("crm.deal.list", {">ID": 10})
    with pytest.raises(errors.BadReplyError, match="a row has no integer ID"):
        export.consume([{"ID": "11"}, {"ID": "12"}, {"TITLE": "no id"}])
    assert export.cursor == 10 and export.rows == 0


def test_a_batch_read_keeps_the_rows_before_a_bad_page():
    export = KeysetExport("crm.deal.list")
    export.known_ceiling(10_000)
    commands = export.commands("chain", 3)
    assert list(commands) == ["p0", "p1", "p2"]
    full = [{"ID": str(i)} for i in range(1, PAGE + 1)]
    read = export.read_batch(commands, _parts({"p0": full, "p1": None}))
    assert read.rows == full and read.advanced and isinstance(read.error, errors.BadReplyError)
    assert export.cursor == PAGE and not export.done


def test_a_batch_read_names_the_command_the_portal_refused():
    export = KeysetExport("crm.deal.list")
    read = export.read_batch(export.commands("chain", 3), _parts(errors_={"top": {"error": "", "error_description": "Access denied."}}))
    assert isinstance(read.error, errors.BatchCommandError) and read.error.command == "top" and not read.advanced


def test_a_segment_read_stops_at_a_bad_page():
    export = KeysetExport("crm.deal.list")
    segment = Segment(0, 500)
    commands = export.segment_commands(0, 500, 3)
    export.read_segment(segment, commands, _parts({"s0": [{"ID": str(i)} for i in range(1, PAGE + 1)], "s1": {"rows": "?"}}))
    assert segment.cursor == PAGE and not segment.complete and isinstance(segment.error, errors.BadReplyError)
    assert export.cursor == 0  # the export's cursor moves only when the rows are emitted
    assert len(list(export.emit(segment.rows))) == PAGE and export.cursor == PAGE


@pytest.mark.parametrize(
    ("start", "reply", "rows", "outcome"),
    [
        (0, Reply([], next=None), 0, None),
        (0, Reply([], next=50, total=120), 50, 50),
        (50, Reply([], next=50, total=120), 50, "next 50 does not move past start 50"),
        (50, Reply([], next=10, total=120), 50, "next 10 does not move past start 50"),
        (0, Reply([], next=50, total=40), 50, "next 50 is past total 40"),
        (0, Reply([], next=50, total=120), 0, "an empty page promises a next one"),
    ],
    ids=["last-page", "next-page", "same-start", "backwards", "past-total", "empty-with-next"],
)
def test_offset_pages_refuse_a_next_that_would_page_forever(start, reply, rows, outcome):
    pager = OffsetPages("crm.category.list", start)
    if isinstance(outcome, str):
        with pytest.raises(errors.BadReplyError, match=outcome):
            pager.following(reply, rows)
    else:
        assert pager.following(reply, rows) == outcome
