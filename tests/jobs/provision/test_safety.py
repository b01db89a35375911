"""Apply never leaves a half-changed portal on a refusal: counts a plan relied on are checked before the
first write; record moves page past 50; apply against a faulty portal converges after a re-run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.client import RetryPolicy
from connector.errors import B24Error
from connector.transport import HttpTransport
from jobs import provision as pv
from mappings.loader import load_config, parse_config
from tests.jobs.provision.conftest import EXAMPLE, cli, writes

EXTRA = '[[pipelines.stages]]\nkey = "EXTRA"\nname = "Доп. стадия"\n\n'


def changed_sales(example: str) -> str:
    """The example with a new stage EXTRA, PAYMENT renamed and CONTRACT removed from the sales pipeline."""
    start = example.index('[[pipelines.stages]]\nkey = "CONTRACT"')
    end = example.index("[[pipelines.stages]]", start + 1)
    text = example[:start] + EXTRA + example[end:]
    return text.replace('name = "Ожидание оплаты"', 'name = "Ждём оплату"', 1)


def applied_example(client: Any) -> str:
    example = EXAMPLE.read_text(encoding="utf-8")
    pv.apply(client, pv.plan(parse_config(example), client), allow_delete=True)
    return example


def test_a_saved_plan_is_refused_when_a_stage_it_deletes_gets_records(emulator: Any, client: Any, tmp_path: Path) -> None:
    config = tmp_path / "changed.toml"
    config.write_text(changed_sales(applied_example(client)), encoding="utf-8")
    saved = tmp_path / "pc.json"
    assert cli("plan", "--config", str(config), "--out", str(saved), url=emulator.url).exit_code == 0
    client.result("crm.deal.add", {"fields": {"TITLE": "Пришла позже", "STAGE_ID": "CONTRACT"}})
    before = writes(emulator)

    result = cli("apply", "--plan", str(saved), "--yes", "--allow-delete", url=emulator.url)
    assert result.exit_code == 1
    assert "the portal changed since this plan was made; run plan again" in result.output
    assert "stage 'sales/CONTRACT' now holds 1 deal(s); the plan counted 0" in result.output
    assert writes(emulator) == before  # nothing written: EXTRA not created, PAYMENT not renamed
    assert "EXTRA" not in {r["STATUS_ID"] for r in emulator.portal.statuses.values()}


def test_apply_checks_every_deletion_before_the_first_write(emulator: Any, client: Any) -> None:
    """Even a plan made without counts (``diff``) is refused whole when a stage or pipeline it deletes holds records."""
    example = applied_example(client)
    only_sales = changed_sales(example).split('[[pipelines]]\nkey = "repeat"')[0]
    plan = pv.diff(parse_config(only_sales), pv.read_snapshot(client))  # no counts: all assumed empty
    assert {(c.kind, c.key) for c in plan.deletions()} == {("stage", "sales/CONTRACT"), ("pipeline", "repeat")}
    repeat = next(c for c in emulator.portal.categories.values() if c.get("originId") == "repeat")
    client.result("crm.deal.add", {"fields": {"TITLE": "В повторных", "CATEGORY_ID": repeat["id"]}})
    client.result("crm.deal.add", {"fields": {"TITLE": "На договоре", "STAGE_ID": "CONTRACT"}})
    before = writes(emulator)
    with pytest.raises(pv.StalePlan) as refused:
        pv.apply(client, plan, allow_delete=True)
    assert writes(emulator) == before
    text = str(refused.value)
    assert "stage 'sales/CONTRACT' now holds 1 deal(s); the plan counted 0" in text
    assert "pipeline 'repeat' now holds 1 deal(s); the plan counted 0" in text


def test_more_than_a_page_of_records_moves_out_of_one_stage(emulator: Any, client: Any) -> None:
    example = applied_example(client)
    deals = [int(i) for i in client.batch(
        [("crm.deal.add", {"fields": {"TITLE": f"Сделка {i}", "STAGE_ID": "CONTRACT"}}) for i in range(120)]
    )]
    moving = changed_sales(example).replace('PREPARATION = "NEEDS"', 'PREPARATION = "NEEDS"\nCONTRACT = "PAYMENT"', 1)
    plan = pv.plan(parse_config(moving), client)
    assert not plan.errors
    assert [(c.key, c.before["records"]) for c in plan.changes if c.action == "move_records"] == [("sales/CONTRACT", 120)]
    pv.apply(client, plan, allow_delete=True)
    assert {emulator.portal.records["deal"][i]["STAGE_ID"] for i in deals} == {"PAYMENT"}
    assert not pv.plan(parse_config(moving), client).has_changes


@pytest.mark.parametrize("spec", ["5xx=0.15,html=0.05,reset=0.05,seed=3", "cut=0.1,timeout=0.05,hang=1,seed=11"])
def test_apply_against_a_faulty_portal_converges(make_emulator: Any, spec: str, client_for: Any) -> None:
    """Faults before a method runs are retried by the client; a reply cut after a write ran may end the
    run with an error, and then a fresh plan and apply continue from where the portal is."""
    server = make_emulator(faults=spec)
    client = client_for(server, transport=HttpTransport(read_timeout=0.2), retry=RetryPolicy(attempts=8, max_elapsed=60.0, base=0.01, cap=0.05))
    config = load_config(EXAMPLE)
    failures = 0
    for _ in range(10):
        try:
            plan = pv.plan(config, client)
            if not plan.has_changes:
                break
            assert not plan.errors, plan.errors
            pv.apply(client, plan, allow_delete=True)
        except B24Error:  # a portal error while planning
            failures += 1
        except pv.ApplyFailed as exc:  # one that stopped apply says what it means for the portal
            assert exc.problems[-1] in ("Nothing was changed on the portal.",
                                        "The portal may be partly changed: run apply again; it continues from where it is.")
            failures += 1
    else:
        pytest.fail("apply did not converge in 10 runs")
    assert sum(server.app.faults.injected.values()) > 0  # the faults really happened
    server.app.faults.rates.clear()
    clean = make_emulator()
    clean_client = client_for(clean)
    pv.apply(clean_client, pv.plan(config, clean_client), allow_delete=True)
    assert pv.export(client) == pv.export(clean_client)
    assert len(server.portal.categories) == 2  # no pipeline created twice
    client.close()
