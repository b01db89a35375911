"""Provisioning against the emulator over real HTTP: apply, idempotence, drift, migration, deletion safety,
stale plans and export round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs import provision as pv
from mappings.loader import load_config, parse_config
from tests.jobs.provision.conftest import EXAMPLE, cli, funnel_rows, writes


def test_fresh_portal_gets_exactly_the_declared_funnels(emulator: Any, client: Any) -> None:
    config = load_config(EXAMPLE)
    plan = pv.plan(config, client)
    assert not plan.errors and plan.has_changes
    made = pv.apply(client, plan, allow_delete=True)
    assert made == writes(emulator) > 0

    portal = emulator.portal
    leads = funnel_rows(portal, "STATUS")
    assert leads == [
        ("NEW", "Заявка на обработку", "10", "#39A8EF", None),
        ("QUALIFICATION", "Квалификация", "20", "#2FC6F6", None),
        ("CONVERTED", "Конвертация в сделку", "30", "#7BD500", "S"),
        ("JUNK", "Забракованные лиды", "40", "#FF5752", "F"),
    ]
    categories = sorted(portal.categories.values(), key=lambda c: (c["sort"], c["id"]))
    assert [(c["name"], c["sort"]) for c in categories] == [("Продажи", 100), ("Повторные продажи", 200)]
    for pipeline, category in zip(config.pipelines, categories):
        prefix = pv.stage_prefix(category["id"])
        expected = [
            (prefix + s.key, s.name, str(sort), s.color, pv.SEMANTICS_CODE[s.semantics] or None)
            for s, sort in zip(pipeline.stages, [10 * (i + 1) for i in range(len(pipeline.stages))])
        ]
        assert funnel_rows(portal, pv.stage_entity(category["id"])) == expected
    assert categories[1]["originatorId"] == "b24sync" and categories[1]["originId"] == "repeat"

    again = pv.plan(config, client)
    assert not again.has_changes and not again.errors
    before = emulator.stats()
    assert pv.apply(client, again, allow_delete=True) == 0
    after = emulator.stats()
    assert after["writes_total"] == before["writes_total"]
    mutating = [m for m in after["by_method"] if m.rsplit(".", 1)[-1] in ("add", "update", "delete")]
    assert all(after["by_method"][m] == before["by_method"].get(m, 0) for m in mutating)


def test_drift_shows_exactly_the_two_changes_and_apply_restores(emulator: Any, client: Any) -> None:
    config = load_config(EXAMPLE)
    pv.apply(client, pv.plan(config, client), allow_delete=True)
    rows = {r["STATUS_ID"]: r for r in funnel_rows_full(emulator.portal, "DEAL_STAGE")}
    needs = rows["NEEDS"]
    client.result("crm.status.update", {"id": needs["ID"], "fields": {"NAME": "Переименовано вручную", "SORT": needs["SORT"]}})
    client.result("crm.status.add", {"fields": {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "HANDMADE", "NAME": "Ручная стадия", "SORT": 25}})

    plan = pv.plan(config, client)
    shown = [(c.action, c.kind, c.key) for c in plan.actionable]
    assert shown == [("update", "stage", "sales/NEEDS"), ("delete", "stage", "sales/HANDMADE")]
    update = plan.actionable[0]
    assert (update.before["name"], update.after["name"]) == ("Переименовано вручную", "Выявление потребностей/болей")
    shown_by_cli = cli("plan", "--config", str(EXAMPLE), "--detailed-exitcode", url=emulator.url)
    assert shown_by_cli.exit_code == 2
    assert shown_by_cli.output.splitlines() == [
        "Pipeline sales",
        '  ~ update  NEEDS  name: "Переименовано вручную" -> "Выявление потребностей/болей"',
        '  - delete  HANDMADE  "Ручная стадия" (0 deals) - not declared in the config',
        "Plan: 0 to create, 1 to update, 0 to reorder, 1 to delete.",
    ]

    with pytest.raises(pv.ProvisionError, match="--allow-delete"):
        pv.apply(client, plan)
    pv.apply(client, plan, allow_delete=True)
    assert not pv.plan(config, client).has_changes
    assert [r[0] for r in funnel_rows(emulator.portal, "DEAL_STAGE")][:3] == ["NEW", "NEEDS", "PROPOSAL"]


def funnel_rows_full(portal: Any, entity_id: str) -> list[dict[str, Any]]:
    from connector.emulator import pipelines

    return [dict(r) for r in pipelines.entity_rows(portal, entity_id)]


def test_migration_export_apply_export_gives_the_same_file(make_emulator: Any, client_for: Any) -> None:
    source = make_emulator(seed=5, deals=60)  # pipelines made by hand: no keys recorded yet
    target = make_emulator()
    a, b = client_for(source), client_for(target)
    exported = pv.export(a)
    config = parse_config(exported)
    assert not pv.plan(config, a).has_changes  # an export reads back as no changes on its own portal

    plan_b = pv.plan(config, b)
    assert not plan_b.errors
    pv.apply(b, plan_b, allow_delete=True)
    assert not pv.plan(config, b).has_changes
    assert pv.export(b) == exported
    names_a = [(c["name"], c["sort"]) for c in sorted(source.portal.categories.values(), key=lambda c: (c["sort"], c["id"]))]
    names_b = [(c["name"], c["sort"]) for c in sorted(target.portal.categories.values(), key=lambda c: (c["sort"], c["id"]))]
    assert names_a == names_b


def test_export_parses_back_to_the_same_models(emulator: Any, client: Any) -> None:
    pv.apply(client, pv.plan(load_config(EXAMPLE), client), allow_delete=True)
    text = pv.export(client)
    config = parse_config(text)
    example = load_config(EXAMPLE)
    assert config.leads.statuses == example.leads.statuses
    for got, want in zip(config.pipelines, example.pipelines):
        assert [s.model_dump() for s in got.stages] == [s.model_dump() for s in want.stages]
        assert (got.name, got.default) == (want.name, want.default)
    assert [p.key for p in config.pipelines] == ["default", "repeat"]  # id 0 carries no key on the portal
    assert "# success (exactly one)" in text and "Cyrillic" not in text


def _add(client: Any, method: str, fields: dict[str, Any]) -> int:
    return int(client.result(method, {"fields": fields}))


def test_deleting_a_stage_that_holds_records_is_refused_then_moves_them(emulator: Any, client: Any) -> None:
    example = EXAMPLE.read_text(encoding="utf-8")
    pv.apply(client, pv.plan(parse_config(example), client), allow_delete=True)
    # more than a page of 50, so counting and moving go past the first page
    deals = [int(i) for i in client.batch([("crm.deal.add", {"fields": {"TITLE": f"Сделка {i}", "STAGE_ID": "NEEDS"}}) for i in range(53)])]
    leads = [_add(client, "crm.lead.add", {"TITLE": f"Лид {i}", "STATUS_ID": "QUALIFICATION"}) for i in range(2)]
    without_needs = _drop_stage(example, "NEEDS").replace(
        '[[leads.statuses]]\nkey = "QUALIFICATION"\nname = "Квалификация"\nsemantics = "process"\ncolor = "#2FC6F6"\n\n', ""
    ).replace('IN_PROCESS = "QUALIFICATION"\nPROCESSED = "QUALIFICATION"', 'IN_PROCESS = "NEW"')

    plan = pv.plan(parse_config(without_needs.replace('PREPARATION = "NEEDS"\n', "", 1)), client)
    assert any("'NEEDS'" in e and "holds 53 deal(s)" in e for e in plan.errors), plan.errors
    assert any("'QUALIFICATION'" in e and "holds 2 lead(s)" in e for e in plan.errors), plan.errors
    before = writes(emulator)
    with pytest.raises(pv.ProvisionError, match="holds 53 deal"):
        pv.apply(client, plan, allow_delete=True)
    assert writes(emulator) == before

    moving = without_needs.replace('PREPARATION = "NEEDS"', 'PREPARATION = "PROPOSAL"\nNEEDS = "PROPOSAL"', 1).replace(
        'IN_PROCESS = "NEW"', 'IN_PROCESS = "NEW"\nQUALIFICATION = "NEW"'
    )
    plan = pv.plan(parse_config(moving), client)
    assert not plan.errors
    moves = [(c.key, c.before["records"], c.after["stage"]) for c in plan.changes if c.action == "move_records"]
    assert moves == [("QUALIFICATION", 2, "NEW"), ("sales/NEEDS", 53, "PROPOSAL")]
    with pytest.raises(pv.ProvisionError, match="--allow-delete"):
        pv.apply(client, plan)
    assert writes(emulator) == before
    pv.apply(client, plan, allow_delete=True)
    records = emulator.portal.records
    assert {records["deal"][i]["STAGE_ID"] for i in deals} == {"PROPOSAL"}
    assert {records["lead"][i]["STATUS_ID"] for i in leads} == {"NEW"}
    assert "NEEDS" not in [r[0] for r in funnel_rows(emulator.portal, "DEAL_STAGE")]
    assert not pv.plan(parse_config(moving), client).has_changes


def _drop_stage(text: str, key: str) -> str:
    """The example text without the [[pipelines.stages]] table of ``key`` in the first pipeline."""
    start = text.index(f'[[pipelines.stages]]\nkey = "{key}"')
    end = text.index("[[pipelines.stages]]", start + 1)
    return text[:start] + text[end:]


def test_pipeline_holding_deals_is_not_deleted(emulator: Any, client: Any) -> None:
    config = load_config(EXAMPLE)
    pv.apply(client, pv.plan(config, client), allow_delete=True)
    repeat = next(c for c in emulator.portal.categories.values() if c.get("originId") == "repeat")
    _add(client, "crm.deal.add", {"TITLE": "Повтор", "CATEGORY_ID": repeat["id"]})
    only_sales = EXAMPLE.read_text(encoding="utf-8").split('[[pipelines]]\nkey = "repeat"')[0]
    plan = pv.plan(parse_config(only_sales), client)
    assert [(c.action, c.key) for c in plan.actionable] == [("delete", "repeat")]
    assert plan.errors == [
        f"pipeline 'repeat' ('Повторные продажи', id {repeat['id']}) holds 1 deal(s) and cannot be deleted: "
        "move its deals to another pipeline first, or declare it"
    ]
    with pytest.raises(pv.ProvisionError):
        pv.apply(client, plan, allow_delete=True)
    assert repeat["id"] in emulator.portal.categories


def test_an_empty_undeclared_pipeline_is_deleted_with_allow_delete(emulator: Any, client: Any) -> None:
    pv.apply(client, pv.plan(load_config(EXAMPLE), client), allow_delete=True)
    only_sales = EXAMPLE.read_text(encoding="utf-8").split('[[pipelines]]\nkey = "repeat"')[0]
    plan = pv.plan(parse_config(only_sales), client)
    assert [(c.action, c.kind, c.key) for c in plan.actionable] == [("delete", "pipeline", "repeat")]
    pv.apply(client, plan, allow_delete=True)
    assert [c["name"] for c in emulator.portal.categories.values()] == ["Продажи"]


def test_a_saved_plan_is_refused_once_the_portal_changed(emulator: Any, client: Any) -> None:
    config = load_config(EXAMPLE)
    saved = pv.Plan.from_json(pv.plan(config, client).to_json())
    row = funnel_rows_full(emulator.portal, "STATUS")[0]
    client.result("crm.status.update", {"id": row["ID"], "fields": {"NAME": "Кто-то поменял", "SORT": row["SORT"]}})
    before = writes(emulator)
    with pytest.raises(pv.StalePlan, match="changed since this plan was made"):
        pv.apply(client, saved, allow_delete=True)
    assert writes(emulator) == before

    fresh = pv.Plan.from_json(pv.plan(config, client).to_json())
    pv.apply(client, fresh, allow_delete=True)
    assert not pv.plan(config, client).has_changes


def test_plan_json_is_plain_data_and_round_trips(emulator: Any, client: Any) -> None:
    plan = pv.plan(load_config(EXAMPLE), client)
    data = json.loads(plan.to_json())
    assert data["format"] == "b24sync-plan" and data["fingerprint"].startswith("sha256:")
    assert {c["action"] for c in data["changes"]} <= set(pv.ACTIONS)
    assert data["summary"] == plan.summary()
    assert pv.Plan.from_json(plan.to_json()) == plan
    with pytest.raises(pv.ProvisionError, match="not a b24sync plan"):
        pv.Plan.from_json('{"changes": []}')


def test_adopting_a_hand_made_pipeline_records_its_key(make_emulator: Any, client_for: Any) -> None:
    server = make_emulator(seed=5, deals=60)  # has a hand-made "Повторные продажи" (id 1) with deals
    client = client_for(server)
    example = EXAMPLE.read_text(encoding="utf-8")
    plan = pv.plan(parse_config(example), client)
    adopt = next(c for c in plan.changes if c.kind == "pipeline" and c.key == "repeat")
    assert adopt.action == "update" and adopt.before["key"] is None and adopt.after["key"] == "repeat"
    assert "adopt" in adopt.reason
    # the adopted pipeline's stock stages hold deals: the example says where they go
    moves = {c.key: c.after["stage"] for c in plan.changes if c.action == "move_records" and c.key.startswith("repeat/")}
    assert moves and set(moves.values()) <= {"NEEDS", "PAYMENT", "LOSE"}
    assert not any(e.startswith("pipeline 'repeat'") for e in plan.errors)
    # "Тендеры" is not declared and holds deals: it cannot be deleted
    assert any("'Тендеры'" in e and "holds" in e for e in plan.errors)


def test_export_of_hand_made_stages_with_equal_sorts_reads_back_as_no_changes(emulator: Any, client: Any) -> None:
    client.result("crm.status.add", {"fields": {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "TWIN", "NAME": "Близнец", "SORT": 20}})
    client.result("crm.status.add", {"fields": {"ENTITY_ID": "STATUS", "STATUS_ID": "UC_7K2", "NAME": "Без цвета", "SORT": 35}})
    text = pv.export(client)
    assert 'key = "TWIN"\nname = "Близнец"\nsort = 20' in text
    assert 'key = "UC_7K2"\nname = "Без цвета"\nsort = 35' in text  # no colour on the portal: none written
    assert not pv.plan(parse_config(text), client).has_changes


def test_the_jobs_accept_the_bitrix24_client_itself(emulator: Any, client: Any) -> None:
    client = client
    config = load_config(EXAMPLE)
    assert pv.export(client) == pv.export(client)
    assert pv.apply(client, pv.plan(config, client), allow_delete=True) == writes(emulator)
    assert not pv.plan(config, client).has_changes
