"""Config models: the example file, and a table of bad files each with its one expected message and line."""

from __future__ import annotations

import textwrap

import pytest

from mappings.config import Config, ConfigError, PortalConfig, pipeline_sorts, stage_sorts
from mappings.loader import load_config, parse_config
from tests.jobs.provision.conftest import EXAMPLE, LEADS, STAGES

def pipeline(stages: str, head: str = 'key = "sales"\nname = "Продажи"\ndefault = true\n') -> str:
    """A [[pipelines]] table with the given head lines and stage tables."""
    return "[[pipelines]]\n" + head + "\n" + textwrap.dedent(stages)


def test_example_config_declares_the_guide_funnels() -> None:
    config = load_config(EXAMPLE)
    leads = config.leads.statuses
    assert [s.name for s in leads] == ["Заявка на обработку", "Квалификация", "Конвертация в сделку", "Забракованные лиды"]
    assert [s.semantics for s in leads] == ["process", "process", "success", "failure"]
    sales, repeat = config.pipelines
    assert sales.default and sales.name == "Продажи"
    assert [s.name for s in sales.stages[:9]] == [
        "Формирование новой сделки",
        "Выявление потребностей/болей",
        "Выставление коммерческого предложения",
        "Подписание договора и формирование счета",
        "Ожидание оплаты",
        "Запуск проекта в работу",
        "Сдача проекта",
        "Закрывающие документы",
        "Сделка закрыта",
    ]
    assert [s.semantics for s in sales.stages] == ["process"] * 8 + ["success", "failure"]
    assert not repeat.default and "Повторные" in repeat.name
    assert stage_sorts(sales.stages) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert pipeline_sorts(config.pipelines) == [100, 200]
    assert config.portal.webhook_env == "B24SYNC_WEBHOOK" and config.portal.burst == 50


def test_minimal_file_is_valid_and_sections_default() -> None:
    config = parse_config(LEADS)
    assert config.pipelines is None  # absent: pipelines unmanaged
    assert config.schedule.sync_every_minutes == 15
    assert config.database.resolved_url().get_secret_value() == "sqlite:///b24sync.sqlite3"
    assert parse_config("").leads is None


def test_explicit_sort_values_are_kept_and_the_rest_follow() -> None:
    config = parse_config(pipeline(STAGES.replace('name = "Успех"', 'name = "Успех"\nsort = 55')))
    assert stage_sorts(config.pipelines[0].stages) == [10, 55, 65]
    # equal values happen on real portals (stages made by hand); an export must read back
    config = parse_config(pipeline(STAGES.replace('name = "Успех"', 'name = "Успех"\nsort = 10')))
    assert stage_sorts(config.pipelines[0].stages) == [10, 10, 20]


BAD = [
    ("toml-syntax", 'key = "a\n', 'bad.toml:1:9: TOML syntax error'),
    ("toml-syntax-line", LEADS + "[[pipelines]\nkey = 1\n", "bad.toml:14:12: TOML syntax error: Expected ']]'"),
    ("typo-top-level", LEADS + '\n[pipeline]\nkey = "x"\n',
     "bad.toml:15: pipeline: unknown setting 'pipeline' (did you mean 'pipelines'?)"),
    ("typo-in-stage", LEADS.replace('name = "Новый"', 'name = "Новый"\ncolour = "#FFFFFF"'),
     "bad.toml:4: leads.statuses[0].colour: unknown setting 'colour' (did you mean 'color'?)"),
    ("typo-in-portal", '[portal]\nwebhook_evn = "X"\n',
     "bad.toml:2: portal.webhook_evn: unknown setting 'webhook_evn' (did you mean 'webhook_env'?)"),
    ("bad-colour", pipeline(STAGES.replace('name = "Успех"', 'name = "Успех"\ncolor = "#12345"')),
     "bad.toml:13: pipelines[0].stages[1].color: '#12345' is not a colour: write it as #RRGGBB"),
    ("unknown-semantics", pipeline(STAGES.replace('semantics = "failure"', 'semantics = "lost"')),
     "bad.toml:18: pipelines[0].stages[2].semantics: unknown semantics 'lost': use one of process, success, failure"),
    ("duplicate-stage-key", pipeline(STAGES.replace('key = "WON"', 'key = "new"')),
     "bad.toml:11: pipelines[0].stages[1].key: duplicate stage key 'new' (first at stages[0])"),
    ("two-success", pipeline(STAGES.replace('semantics = "failure"', 'semantics = "success"') + '\n[[pipelines.stages]]\nkey = "L2"\nname = "x"\nsemantics = "failure"\n'),
     "bad.toml:18: pipelines[0].stages[2].semantics: a second success stage: the portal allows exactly one (first: 'WON')"),
    ("no-success", pipeline(STAGES.replace('semantics = "success"', 'semantics = "process"')),
     "bad.toml:6: pipelines[0].stages: no success stage: the portal needs exactly one"),
    ("no-failure", LEADS.replace('semantics = "failure"', 'semantics = "process"').replace(
        'key = "CONVERTED"\nname = "Сделка"\nsemantics = "success"', 'key = "CONVERTED"\nname = "Сделка"\nsemantics = "process"')
     + '\n[[leads.statuses]]\nkey = "WIN"\nname = "w"\nsemantics = "success"\n',
     "bad.toml:1: leads.statuses: no failure lead status: the portal needs at least one"),
    ("process-after-success", pipeline(STAGES + '\n[[pipelines.stages]]\nkey = "LATE"\nname = "Поздно"\n'),
     "bad.toml:20: pipelines[0].stages[3].semantics: process stage 'LATE' comes after failure stage 'LOSE'"),
    ("bad-key-charset", pipeline(STAGES.replace('key = "NEW"', 'key = "НОВАЯ"')),
     "bad.toml:7: pipelines[0].stages[0].key: key 'НОВАЯ' may only hold latin letters, digits, '_' and '-'"),
    ("key-with-prefix", pipeline(STAGES.replace('key = "NEW"', 'key = "C3:NEW"')),
     "bad.toml:7: pipelines[0].stages[0].key: key 'C3:NEW' may only hold"),
    ("lead-key-too-long", LEADS.replace('key = "JUNK"', 'key = "JUNK_JUNK_JUNK_JUNK_JU"'),
     "bad.toml:11: leads.statuses[2].key: lead status key 'JUNK_JUNK_JUNK_JUNK_JU' is longer than 21 characters"),
    ("sort-not-increasing", pipeline(STAGES.replace('name = "Провал"', 'name = "Провал"\nsort = 15')),
     "bad.toml:18: pipelines[0].stages[2].sort: sort 15 is lower than the previous stage's 20"),
    ("negative-sort", pipeline(STAGES.replace('name = "Провал"', 'name = "Провал"\nsort = -5')),
     "bad.toml:18: pipelines[0].stages[2].sort: Input should be greater than or equal to 0"),
    ("missing-name", pipeline(STAGES.replace('name = "Новая"\n', '')),
     "bad.toml:6: pipelines[0].stages[0].name: missing required setting 'name'"),
    ("blank-name", pipeline(STAGES.replace('name = "Новая"', 'name = "   "')),
     "bad.toml:8: pipelines[0].stages[0].name: name must not be blank"),
    ("two-defaults", pipeline(STAGES) + pipeline(STAGES, 'key = "b"\nname = "Б"\ndefault = true\n'),
     "bad.toml:22: pipelines[1].default: a second default pipeline; the portal has one (pipelines[0])"),
    ("duplicate-pipeline-key", pipeline(STAGES) + pipeline(STAGES, 'key = "sales"\nname = "Б"\n'),
     "bad.toml:20: pipelines[1].key: duplicate pipeline key 'sales' (first used by pipelines[0])"),
    ("default-with-id", pipeline(STAGES, 'key = "s"\nname = "S"\ndefault = true\nid = 3\n'),
     "bad.toml:5: pipelines[0].id: the default pipeline is always id 0; remove id"),
    ("move-to-unknown", pipeline(STAGES) + '\n[pipelines.move_records]\nOLD = "NOPE"\n',
     "bad.toml:21: pipelines[0].move_records.OLD: target 'NOPE' is not a declared stage of this funnel"),
    ("move-declared-stage", LEADS + '\n[leads.move_records]\nJUNK = "NEW"\n',
     "bad.toml:16: leads.move_records.JUNK: 'JUNK' is still declared; records are only moved off lead statuses being removed"),
    ("no-stages", '[[pipelines]]\nkey = "x"\nname = "X"\ndefault = true\nstages = []\n',
     "bad.toml:5: pipelines[0].stages: no stages declared"),
    ("no-default-pipeline", pipeline(STAGES, 'key = "x"\nname = "X"\n') + pipeline(STAGES, 'key = "y"\nname = "Y"\n'),
     "bad.toml:1: pipelines: no default pipeline: exactly one must say default = true"),
    ("empty-pipeline-list", 'pipelines = []\n', "bad.toml:1: pipelines: no default pipeline"),
    ("setting-twice", '[portal]\nrate = 1.5\nburst = 50\nrate = 2\n',
     "bad.toml:4: portal.rate: set twice (TOML syntax error: Cannot overwrite a value)"),
    ("stage-setting-twice", pipeline(STAGES.replace('name = "Успех"', 'name = "Успех"\nname = "Снова"')),
     "bad.toml:13: pipelines[0].stages[1].name: set twice (TOML syntax error: Cannot overwrite a value)"),
    ("top-level-twice", 'pipelines = []\npipelines = []\n', "bad.toml:2: pipelines: set twice"),
    ("bad-cron", '[schedule]\nreport_cron = "every monday"\n',
     "bad.toml:2: schedule.report_cron: 'every monday' is not a 5-field crontab line"),
    ("rate-zero", '[portal]\nrate = 0\n', "bad.toml:2: portal.rate: Input should be greater than 0"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD], ids=[i for i, _, _ in BAD])
def test_bad_config_is_reported_with_its_location(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="bad.toml")
    messages = [str(p) for p in caught.value.problems]
    assert len(messages) == 1, messages
    assert messages[0].startswith(expected), messages[0]


def test_every_problem_is_reported_at_once_in_file_order(tmp_path) -> None:
    text = (
        '[portal]\nburts = 50\n\n'
        + LEADS.replace('key = "JUNK"', 'key = "CONVERTED"')
        + "\n"
        + pipeline(STAGES.replace('name = "Успех"', 'name = "Успех"\ncolor = "red"').replace('semantics = "failure"', 'semantics = "fail"'))
    )
    path = tmp_path / "b24sync.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = caught.value.problems
    assert [(p.line, p.location) for p in problems] == [
        (2, "portal.burts"),
        (14, "leads.statuses[2].key"),
        (30, "pipelines[0].stages[1].color"),
        (36, "pipelines[0].stages[2].semantics"),
    ]
    lines = [p.line for p in problems]
    assert lines == sorted(lines)
    assert all(str(p).startswith(f"{path}:") for p in problems)
    assert len(str(caught.value).splitlines()) == len(problems)


def test_missing_file_and_non_utf8_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    path = tmp_path / "latin1.toml"
    path.write_bytes('[[leads.statuses]]\nname = "\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_secrets_are_named_not_written_and_never_printed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MY_HOOK", "https://example.bitrix24.ru/rest/1/canary-secret-code/")
    portal = PortalConfig(webhook_env="MY_HOOK")
    secret = portal.webhook()
    assert secret.get_secret_value().endswith("canary-secret-code/")
    assert "canary" not in repr(secret) and "canary" not in str(secret)
    (tmp_path / "hook.txt").write_text("https://example.bitrix24.ru/rest/1/file-canary/\n", encoding="utf-8")
    from_file = PortalConfig(webhook_env=None, webhook_file="hook.txt").webhook(base=tmp_path)
    assert from_file.get_secret_value() == "https://example.bitrix24.ru/rest/1/file-canary/"
    config = parse_config('[database]\nurl = "postgresql+psycopg://u:db-canary@h/db"\n')
    assert "db-canary" not in repr(config) and "db-canary" not in config.model_dump_json()
    oauth = parse_config('[portal.oauth]\nclient_id = "local.x"\nclient_secret_env = "CS"\n').portal.oauth
    monkeypatch.setenv("CS", "oauth-canary")
    assert oauth.client_secret().get_secret_value() == "oauth-canary"


def test_every_field_has_a_description() -> None:
    from pydantic import BaseModel

    seen: set[type] = set()

    def walk(model: type[BaseModel]) -> None:
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            from mappings.config import inner_model

            inner = inner_model(field.annotation)
            if inner is not None:
                walk(inner)

    walk(Config)
    assert len(seen) >= 8


def test_the_config_reference_in_the_docs_names_every_field() -> None:
    from pydantic import BaseModel

    from mappings.config import inner_model
    from tests.jobs.provision.conftest import ROOT

    docs = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = []

    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            name = field.alias or name  # the key the file writes
            forms = (f"`{name}`", f"{name} =", f"[{name}]", f"[[{name}]]", f".{name}]")
            if not any(form in docs for form in forms):
                missing.append(f"{model.__name__}.{name}")
            inner = inner_model(field.annotation)
            if inner is not None:
                walk(inner)

    walk(Config)
    assert missing == []
