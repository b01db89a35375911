"""Where the portal comes from (``jobs/portal.py``) and ``b24sync call``, end to end against the emulator."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from connector.auth import JsonFileTokenStore, OAuthAuth, WebhookAuth
from jobs.cli import main
from jobs.portal import PortalNotConfigured, parse_cli_pairs, resolve


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No webhook or config from the developer's shell or working directory."""
    monkeypatch.delenv("B24SYNC_WEBHOOK", raising=False)
    monkeypatch.delenv("B24SYNC_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def run(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def test_pairs_become_nested_params():
    assert parse_cli_pairs(["filter[>ID]=5", "filter[<=ID]=9", "select[]=ID", "select[]=TITLE", "order[ID]=DESC", "start=-1"]) == {
        "filter": {">ID": "5", "<=ID": "9"}, "select": ["ID", "TITLE"], "order": {"ID": "DESC"}, "start": "-1"
    }


def test_call_prints_pretty_json_with_cyrillic(emulator):
    added = run("call", "crm.deal.add", "fields[TITLE]=Поставка оборудования", "fields[OPPORTUNITY]=1500.50", "--webhook", emulator.url)
    assert added.exit_code == 0, added.stderr
    deal_id = json.loads(added.stdout)
    result = run("call", "crm.deal.list", f"filter[ID]={deal_id}", "select[]=ID", "select[]=TITLE", "select[]=OPPORTUNITY", "--webhook", emulator.url)
    assert result.exit_code == 0
    assert "Поставка оборудования" in result.stdout and "\\u" not in result.stdout
    assert json.loads(result.stdout) == [{"ID": str(deal_id), "TITLE": "Поставка оборудования", "OPPORTUNITY": "1500.50"}]
    assert result.stdout.startswith("[\n  {")


def test_call_all_streams_one_json_object_per_line(make_emulator):
    server = make_emulator(seed=11, deals=300)
    result = run("call", "crm.deal.list", "--all", "filter[>ID]=10", "filter[<=ID]=260", "select[]=TITLE", "--webhook", server.url)
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [int(r["ID"]) for r in rows] == [i for i in sorted(server.portal.records["deal"]) if 10 < i <= 260]
    assert all(set(r) == {"ID", "TITLE"} for r in rows)


def test_call_all_handles_item_and_history_shapes(make_emulator):
    server = make_emulator(seed=11, deals=300)
    items = run("call", "crm.item.list", "entityTypeId=2", "select[]=id", "--all", "--webhook", server.url)
    assert len(items.stdout.splitlines()) == len(server.portal.records["deal"])
    history = run("call", "crm.stagehistory.list", "entityTypeId=2", "--all", "--webhook", server.url)
    assert history.exit_code == 0
    assert [json.loads(line)["ID"] for line in history.stdout.splitlines()][:3] == [1, 2, 3]


def test_webhook_from_the_environment(emulator):
    result = run("call", "crm.category.list", "entityTypeId=2", env={"B24SYNC_WEBHOOK": emulator.url})
    assert result.exit_code == 0 and json.loads(result.stdout)["categories"][0]["id"] == 0


def test_webhook_named_by_the_config(emulator, tmp_path, monkeypatch):
    config = tmp_path / "b24sync.toml"
    config.write_text('[portal]\nwebhook_env = "B24_WEBHOOK"\nrate = 5\nburst = 250\n', encoding="utf-8")
    monkeypatch.setenv("B24_WEBHOOK", emulator.url)
    spec = resolve(config=config)
    assert isinstance(spec.auth, WebhookAuth) and (spec.burst, spec.rate) == (250, 5)
    assert run("call", "profile", "--config", str(config)).exit_code == 0
    assert run("call", "profile").exit_code == 0  # ./b24sync.toml is the default config


def test_webhook_in_a_file_named_by_the_config(emulator, tmp_path):
    (tmp_path / "secret").write_text(emulator.url + "\n")
    config = tmp_path / "conf.toml"
    config.write_text('[portal]\nwebhook_env = "UNSET_VARIABLE_X"\nwebhook_file = "secret"\n')
    result = run("call", "profile", "--config", str(config))
    assert result.exit_code == 0, result.stderr


def test_order_of_sources(emulator, tmp_path, monkeypatch):
    config = tmp_path / "conf.toml"
    config.write_text('[portal]\nwebhook_env = "B24_WEBHOOK"\n')
    monkeypatch.setenv("B24_WEBHOOK", "https://from-config.example/rest/1/aaaa/")
    monkeypatch.setenv("B24SYNC_WEBHOOK", "https://from-env.example/rest/1/bbbb/")
    assert resolve("https://from-flag.example/rest/1/cccc/", config).auth.origin == "https://from-flag.example"
    assert resolve(None, config).auth.origin == "https://from-env.example"
    monkeypatch.delenv("B24SYNC_WEBHOOK")
    assert resolve(None, config).auth.origin == "https://from-config.example"


def test_oauth_from_the_config_refreshes_and_rewrites_the_token_file(make_emulator, tmp_path, monkeypatch):
    server = make_emulator(oauth=True)
    server.app.expire_tokens()
    token_file = tmp_path / "tokens.json"
    JsonFileTokenStore(token_file).save(OAuthAuth("x", "y", _tokens(server.oauth)).tokens)
    (tmp_path / "conf.toml").write_text(
        f'[portal]\n[portal.oauth]\nclient_id = "{server.oauth["client_id"]}"\nclient_secret_env = "APP_SECRET"\ntoken_file = "tokens.json"\n'
    )
    monkeypatch.setenv("APP_SECRET", server.oauth["client_secret"])
    spec = resolve(config=tmp_path / "conf.toml")
    assert isinstance(spec.auth, OAuthAuth)
    assert spec.auth.token_url == f"{server.base_url}/oauth/token/"  # from the token reply's server_endpoint
    result = run("call", "crm.category.list", "entityTypeId=2", "--config", str(tmp_path / "conf.toml"))
    assert result.exit_code == 0, result.stderr
    assert server.stats()["token_refreshes"] == 1
    assert JsonFileTokenStore(token_file).load().access_token != server.oauth["access_token"]


def _tokens(data):
    from connector.auth import Tokens

    return Tokens.from_reply(data)


@pytest.mark.parametrize(
    ("config_text", "env", "expected"),
    [
        (None, {}, "no Bitrix24 portal configured"),
        ('[portal]\nwebhook_env = "B24_WEBHOOK"\n', {}, "B24_WEBHOOK is not set"),
        ('[portal]\nwebhook_env = "B24_WEBHOOK"\nwebhook_file = "missing.txt"\n', {}, "cannot read the secret file"),
        ('[portal.oauth]\nclient_id = "local.x"\n', {}, "no client secret"),
        ('[portal.oauth]\nclient_id = "local.x"\nclient_secret_env = "S"\n', {"S": "v"}, "token file"),
        ('[portal]\nwebhook_envv = "X"\n', {}, "unknown setting 'webhook_envv'"),
        (None, {"B24SYNC_WEBHOOK": "https://portal/rest/x/secret-code-77/"}, "B24SYNC_WEBHOOK is not usable"),
    ],
    ids=["nothing", "env-unset", "file-missing", "oauth-no-secret", "oauth-no-tokens", "typo", "malformed-env"],
)
def test_missing_portal_is_a_clear_error(tmp_path, monkeypatch, config_text, env, expected):
    args = ["call", "profile"]
    if config_text is not None:
        (tmp_path / "conf.toml").write_text(config_text)
        args += ["--config", str(tmp_path / "conf.toml")]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = run(*args)
    assert result.exit_code == 2
    assert expected in result.stderr and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr and "secret-code-77" not in result.stderr
    with pytest.raises(PortalNotConfigured):
        resolve(config=tmp_path / "conf.toml" if config_text else None)


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["crm.nothing.here"], 1, "ERROR_METHOD_NOT_FOUND"),
        (["crm.deal.get", "id=99999"], 1, "Not found"),
        (["crm.deal.list", "oops"], 2, "KEY=VALUE"),
        (["crm.deal.list", "--all", "filter=5"], 2, "filter must be nested keys"),
        (["crm.deal.list", "--all", "filter[>ID]=abc"], 2, "must be an integer ID"),
        (["crm.deal.get", "--all", "id=1"], 2, "--all needs a list method"),
    ],
    ids=["unknown-method", "not-found", "bad-pair", "flat-filter", "bad-id-filter", "all-of-a-get"],
)
def test_call_errors_go_to_stderr_without_traceback(emulator, args, code, expected):
    result = run("call", *args, "--webhook", emulator.url)
    assert result.exit_code == code
    assert expected in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert emulator.url.split("/rest/")[1] not in result.stderr


def test_a_malformed_webhook_shows_the_expected_shape_but_not_its_code(monkeypatch):
    monkeypatch.setenv("B24SYNC_WEBHOOK", "https://portal.example.ru/rest/admin/secret-code-77/")
    result = run("call", "profile")
    assert result.exit_code == 2
    assert "looks like https://PORTAL/rest/<user id>/<webhook code>/" in result.stderr  # the hint is not masked
    assert "secret-code-77" not in result.stderr
