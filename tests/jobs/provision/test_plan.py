"""Planning rules without HTTP: pipeline identity, refused plans, the legal order of writes, rendering."""

from __future__ import annotations

import io
import random
import tomllib
from typing import Any

import pytest
from rich.console import Console

from connector.emulator import new_portal, pipelines
from connector.emulator.registry import invoke
from jobs import provision as pv
from jobs.provision import order
from mappings.config import Config, ConfigError
from mappings.loader import load_config, parse_config
from tests.jobs.provision.conftest import EXAMPLE, STAGES


def snapshot_of(portal: Any) -> pv.Snapshot:
    """What read_snapshot would read from this portal."""
    categories = [dict(c) for c in pipelines.categories_sorted(portal)]
    entities = ["STATUS"] + [pv.stage_entity(c["id"]) for c in categories]
    return pv.Snapshot(categories, {e: [dict(r) for r in pipelines.entity_rows(portal, e)] for e in entities})


def config_with(*pipelines_toml: str) -> Any:
    return parse_config("\n".join(pipelines_toml))


def default_pipeline(stages: str = STAGES) -> str:
    return '[[pipelines]]\nkey = "main"\nname = "Общая"\ndefault = true\nsort = 0\n' + stages


def pipeline(key: str, name: str, extra: str = "", stages: str = STAGES) -> str:
    return f'[[pipelines]]\nkey = "{key}"\nname = "{name}"\n{extra}\n' + stages


def add_category(portal: Any, name: str, **fields: Any) -> int:
    return invoke(portal, "crm.category.add", {"entityTypeId": 2, "fields": {"name": name, "sort": 500, **fields}})["category"]["id"]


# ---------------------------------------------------------------- pipeline identity


def test_recorded_key_wins_over_name_and_survives_a_rename() -> None:
    portal = new_portal()
    hand = add_category(portal, "Повторные")
    ours = add_category(portal, "Старое имя", originatorId="b24sync", originId="repeat")
    config = config_with(default_pipeline(), pipeline("repeat", "Повторные"))
    matched, problems = pv.match_pipelines(config.pipelines, snapshot_of(portal).categories)
    assert not problems
    assert matched["repeat"]["id"] == ours != hand  # renamed on the portal, still found by its key


def test_pin_derived_key_and_unique_name_adoption() -> None:
    portal = new_portal()
    a = add_category(portal, "Тендеры")
    b = add_category(portal, "Партнёры")
    c = add_category(portal, "Дубль")
    add_category(portal, "Дубль")
    config = config_with(
        default_pipeline(),
        pipeline("tenders", "Новое имя тендеров", f"id = {a}"),
        pipeline(f"pipeline_{b}", "Партнёры"),
        pipeline("twins", "Дубль"),
    )
    matched, problems = pv.match_pipelines(config.pipelines, snapshot_of(portal).categories)
    assert not problems
    assert matched["main"]["id"] == 0 and matched["tenders"]["id"] == a and matched[f"pipeline_{b}"]["id"] == b
    assert matched["twins"] is None  # two pipelines share the name: nothing is guessed, one is created
    assert c not in {m["id"] for m in matched.values() if m}


def test_a_derived_key_does_not_capture_a_different_pipeline_of_another_portal() -> None:
    portal = new_portal()
    other = add_category(portal, "Чужая воронка")
    config = config_with(default_pipeline(), pipeline(f"pipeline_{other}", "Повторные продажи"))
    matched, _ = pv.match_pipelines(config.pipelines, snapshot_of(portal).categories)
    assert matched[f"pipeline_{other}"] is None


def test_a_pin_that_does_not_exist_is_reported_and_a_pin_renames_a_recorded_key() -> None:
    portal = new_portal()
    stamped = add_category(portal, "Наша", originatorId="b24sync", originId="ours")
    config = config_with(default_pipeline(), pipeline("x", "X", "id = 77"), pipeline("renamed", "Наша", f"id = {stamped}"))
    matched, problems = pv.match_pipelines(config.pipelines, snapshot_of(portal).categories)
    assert problems == ["pipeline 'x': pinned id 77 does not exist on the portal"]
    assert matched["renamed"]["id"] == stamped
    change = next(c for c in pv.diff(config, snapshot_of(portal)).changes if c.key == "renamed")
    assert (change.action, change.before["key"], change.after["key"]) == ("update", "ours", "renamed")


# ---------------------------------------------------------------- plans the portal would not allow


def plan_errors(config_text: str, portal: Any | None = None) -> list[str]:
    portal = portal or new_portal()
    return pv.diff(parse_config(config_text), snapshot_of(portal)).errors


def test_semantics_never_change_on_an_existing_stage() -> None:
    errors = plan_errors(default_pipeline(STAGES.replace('key = "WON"', 'key = "PREPARATION"')))
    assert (
        "pipeline 'main': stage 'PREPARATION' is process on the portal and success in the config; Bitrix24 never "
        "changes a stage's semantics: give it a new key (and say in move_records where the old one's records go)"
    ) in errors


def test_system_stages_are_never_planned_for_deletion() -> None:
    stages = STAGES.replace('key = "LOSE"', 'key = "LOST"')
    errors = plan_errors(default_pipeline(stages))
    assert errors == [
        "pipeline 'main': stage 'LOSE' ('Сделка провалена') is a system stage that the portal does not let anyone "
        "delete; declare it (renaming it is fine)"
    ]
    plan = pv.diff(parse_config(default_pipeline(stages)), snapshot_of(new_portal()))
    assert "LOSE" not in [c.code for c in plan.changes if c.action == "delete"]


def test_the_success_stage_cannot_be_replaced() -> None:
    errors = plan_errors(default_pipeline(STAGES.replace('key = "WON"', 'key = "DONE"')))
    assert any("success stage 'DONE' cannot be added: the portal's success stage is 'WON'" in e for e in errors), errors


def test_a_new_pipeline_must_declare_the_system_stages_it_is_born_with() -> None:
    errors = plan_errors(default_pipeline() + pipeline("extra", "Новая воронка", stages=STAGES.replace('key = "WON"', 'key = "DONE"')))
    assert errors == [
        "pipeline 'extra': the portal creates every pipeline with the system stage 'WON' (success), which cannot be "
        "deleted; declare a success stage with key 'WON' (any name)"
    ]


def test_stage_keys_must_fit_beside_the_pipeline_prefix() -> None:
    long_key = "A" * 20
    text = default_pipeline() + pipeline("extra", "Новая", stages=STAGES + f'\n[[pipelines.stages]]\nkey = "{long_key}"\nname = "x"\nsemantics = "failure"\n')
    errors = plan_errors(text)
    assert errors == [f"pipeline 'extra': stage key '{long_key}' is longer than 19 characters, the room left by the prefix 'C1:'"]


def test_the_default_pipeline_must_be_declared_when_pipelines_are_managed() -> None:
    text = pipeline("only", "Только эта")
    with pytest.raises(ConfigError) as caught:  # a config error, before any API call
        parse_config(text)
    assert [p.location for p in caught.value.problems] == ["pipelines"]
    # models built in code skip the file rules: the plan still refuses to delete pipeline 0
    config = Config.model_validate(tomllib.loads(text))
    errors = pv.diff(config, snapshot_of(new_portal())).errors
    assert "the portal's default pipeline (id 0) cannot be deleted: declare it with default = true" in errors


def test_unmanaged_sections_are_left_alone() -> None:
    plan = pv.diff(parse_config("[database]\n"), snapshot_of(new_portal()))
    assert plan.changes == [] and plan.errors == []


def test_stock_stages_of_an_unfinished_pipeline_go_without_allow_delete() -> None:
    portal = new_portal()
    add_category(portal, "Повторные продажи", originatorId="b24sync:new", originId="repeat")
    config = load_config(EXAMPLE)
    plan = pv.diff(config, snapshot_of(portal))
    finish = next(c for c in plan.changes if c.kind == "pipeline" and c.key == "repeat")
    assert finish.action == "update" and finish.unfinished and finish.reason.startswith("finish")
    template = [c.code for c in plan.changes if c.action == "delete" and c.stage_list == "repeat"]
    assert template == ["PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE", "APOLOGY"]
    assert not [c for c in plan.deletions() if c.stage_list == "repeat"]
    assert [c.stage_list for c in plan.deletions()] == ["leads", "leads"] + ["sales"] * 5


# ---------------------------------------------------------------- the order of writes


def test_sort_updates_keep_every_intermediate_state_legal() -> None:
    rng = random.Random(20261126)
    for _ in range(500):
        n_process, n_failure = rng.randint(0, 6), rng.randint(1, 4)
        kinds = ["process"] * n_process + ["success"] + ["failure"] * n_failure

        def legal_sorts() -> list[int]:
            values = sorted(rng.sample(range(1, 300), len(kinds)))
            return values  # increasing, so in progress < success < failure holds

        start, end = legal_sorts(), legal_sorts()
        # shuffle within groups so stages swap places too
        codes = [f"S{i}" for i in range(len(kinds))]
        state = {c: (k, s) for c, k, s in zip(codes, kinds, start)}
        groups: dict[str, list[int]] = {}
        for k, s in zip(kinds, end):
            groups.setdefault(k, []).append(s)
        for values in groups.values():
            rng.shuffle(values)
        targets = {}
        for code, kind in zip(codes, kinds):
            targets[code] = groups[kind].pop()
        writes = order.legal_order(state, targets)
        assert sorted(writes) == sorted(targets)
        current = dict(state)
        for code in writes:
            current[code] = (current[code][0], targets[code])
            assert order.is_legal(current), (state, targets, writes)


@pytest.mark.parametrize(
    ("semantics", "wanted", "success", "expected"),
    [("process", 20, 60, 20), ("process", 70, 60, 59), ("failure", 100, 60, 100), ("failure", 50, 60, 61),
     ("success", 90, None, 90), ("process", 70, None, 70)],
)
def test_new_stages_start_at_a_sort_the_portal_accepts(semantics: str, wanted: int, success: int | None, expected: int) -> None:
    assert order.legal_sort(semantics, wanted, success) == expected


# ---------------------------------------------------------------- rendering


def render(plan: pv.Plan) -> str:
    buffer = io.StringIO()
    pv.render_plan(plan, Console(file=buffer, width=200, highlight=False, color_system=None))
    return buffer.getvalue()


def test_text_plan_shows_before_and_after_and_hides_no_ops() -> None:
    text = render(pv.diff(load_config(EXAMPLE), snapshot_of(new_portal())))
    assert '~ update  NEW  name: "Новая" -> "Формирование новой сделки"' in text
    assert '~ update  CONVERTED  name: "Качественный лид" -> "Конвертация в сделку"; sort: 40 -> 30' in text
    assert '+ create  pipeline  "Повторные продажи" (sort 200)' in text
    assert '- delete  APOLOGY  "Анализ причины провала" (0 deals)' in text
    assert text.rstrip().endswith("Plan: 15 to create, 7 to update, 0 to reorder, 7 to delete.")
    assert "noop" not in text and "\x1b[" not in text  # plain text when not on a terminal
    assert render(pv.Plan()) == "No changes: the portal matches the config.\n"


def test_an_undeclared_pipeline_never_shares_its_change_key_with_a_declared_one() -> None:
    """A file exported elsewhere declares ``pipeline_2``; this portal's hand-made pipeline 2 is another
    funnel (other name): it is created anew, and the undeclared id 2 is deleted under ``pipeline_2#id2``."""
    portal = new_portal()
    add_category(portal, "Первая")
    extra = add_category(portal, "Лишняя")
    config = config_with(default_pipeline(), pipeline("pipeline_1", "Первая", "sort = 500"), pipeline(f"pipeline_{extra}", "Тендеры"))
    plan = pv.diff(config, snapshot_of(portal))
    pipelines_changed = [(c.action, c.key) for c in plan.changes if c.kind == "pipeline" and c.action != "noop"]
    assert pipelines_changed == [("create", f"pipeline_{extra}"), ("delete", f"pipeline_{extra}#id{extra}")]
    keys = [c.key for c in plan.changes if c.kind == "pipeline"]
    assert len(keys) == len(set(keys))
    text = render(plan)
    assert f'Pipeline pipeline_{extra}#id{extra}\n  - delete  pipeline  "Лишняя" (id {extra}, 0 deals)' in text


def test_finishing_an_interrupted_pipeline_creation_renders_as_a_sentence() -> None:
    portal = new_portal()
    add_category(portal, "Повторные продажи", sort=200, originatorId="b24sync:new", originId="repeat")
    plan = pv.diff(load_config(EXAMPLE), snapshot_of(portal))
    lines = render(plan).splitlines()
    assert "  ~ update  pipeline  finish creating the pipeline (an earlier apply was interrupted)" in lines


def test_a_hand_made_pipeline_matched_by_its_derived_key_is_an_update_that_records_the_key() -> None:
    """Apply writes originId/originatorId along with the new sort, so the plan says so; ``reorder`` only ever means SORT."""
    portal = new_portal()
    first = add_category(portal, "Первая")  # sort 500
    plan = pv.diff(config_with(default_pipeline(), pipeline(f"pipeline_{first}", "Первая")), snapshot_of(portal))
    change = next(c for c in plan.changes if c.kind == "pipeline" and c.key == f"pipeline_{first}")
    assert change.action == "update" and change.before["key"] is None and change.after["key"] == f"pipeline_{first}"
    assert (
        f'  ~ update  pipeline  sort: 500 -> 100; key: (none) -> "pipeline_{first}" '
        f"(adopt the portal's pipeline 'Первая' (id {first}) and record its key)"
    ) in render(plan).splitlines()
    # nothing else differs: an export of this portal reads back as no changes (the key is recorded later)
    same = pv.diff(config_with(default_pipeline(), pipeline(f"pipeline_{first}", "Первая", "sort = 500")), snapshot_of(portal))
    assert [c.action for c in same.changes if c.kind == "pipeline"] == ["noop", "noop"]
