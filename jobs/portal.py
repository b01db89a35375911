"""Where the portal comes from, for every command: ``--webhook``, else ``B24SYNC_WEBHOOK``, else the config.

The config's ``[portal]`` section names an environment variable or a file that holds the webhook
URL (never the URL itself), or an OAuth application in ``[portal.oauth]``, plus the plan's limits.
``run_call`` is the work behind ``b24sync call``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from connector.auth import Auth, JsonFileTokenStore, OAuthAuth, WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy, is_list_method
from connector.encoding import parse_pairs
from connector.errors import B24Error
from connector.redact import redact
from connector.ratelimit import LeakyBucket
from connector.transport import HttpTransport, Transport

ENV_WEBHOOK = "B24SYNC_WEBHOOK"
ENV_CONFIG = "B24SYNC_CONFIG"
DEFAULT_CONFIG = "b24sync.toml"

HOW_TO = (
    "pass --webhook URL, set the environment variable B24SYNC_WEBHOOK, or give a config file "
    "(--config FILE or B24SYNC_CONFIG) whose [portal] names webhook_env or webhook_file, or has [portal.oauth]"
)


class PortalNotConfigured(Exception):
    """No usable portal: the message says what is missing (never a secret)."""


@dataclass(frozen=True)
class PortalSpec:
    """A resolved portal: its auth object, the plan's limits, and where it came from (safe to print)."""

    auth: Auth
    burst: float = 50.0
    rate: float = 2.0
    source: str = ""


def config_path(config: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file to read: ``--config``, else ``B24SYNC_CONFIG``, else ``./b24sync.toml`` when it exists."""
    environ = os.environ if environ is None else environ
    if config:
        return Path(config)
    if environ.get(ENV_CONFIG):
        return Path(environ[ENV_CONFIG])
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def _webhook_auth(url: str, source: str) -> WebhookAuth:
    try:
        return WebhookAuth(url)
    except ValueError as exc:
        raise PortalNotConfigured(f"the webhook from {source} is not usable: {exc}") from None


def resolve(
    webhook: str | None = None,
    config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> PortalSpec:
    """Find the portal for a command, in order: ``--webhook``, ``B24SYNC_WEBHOOK``, the config's ``[portal]``.

    Limits (``rate``, ``burst``) come from the config when there is one, whichever way the
    webhook was given. Raises ``PortalNotConfigured`` naming what is missing.
    """
    environ = os.environ if environ is None else environ
    path = config_path(config, environ)
    settings = _portal_settings(path) if path is not None else None
    burst = float(settings.burst) if settings is not None else 50.0
    rate = float(settings.rate) if settings is not None else 2.0
    if webhook:
        return PortalSpec(_webhook_auth(webhook, "--webhook"), burst, rate, "--webhook")
    if environ.get(ENV_WEBHOOK):
        return PortalSpec(_webhook_auth(environ[ENV_WEBHOOK], ENV_WEBHOOK), burst, rate, ENV_WEBHOOK)
    if settings is None or path is None:
        raise PortalNotConfigured(f"no Bitrix24 portal configured: {HOW_TO}")
    base = path.resolve().parent
    if settings.oauth is not None:
        return PortalSpec(_oauth_auth(settings.oauth, base, path), burst, rate, f"{path} [portal.oauth]")
    url = _secret(lambda: settings.webhook(base), f"{path} [portal]")
    if url is None:
        named = []
        if settings.webhook_env:
            named.append(f"environment variable {settings.webhook_env} is not set")
        if settings.webhook_file:
            named.append(f"webhook_file {settings.webhook_file} is empty")
        detail = "; ".join(named) or "it names neither webhook_env nor webhook_file"
        raise PortalNotConfigured(f"no Bitrix24 portal configured: {path} [portal]: {detail}; {HOW_TO}")
    return PortalSpec(_webhook_auth(url, f"{path} [portal]"), burst, rate, f"{path} [portal]")


def _portal_settings(path: Path) -> Any:
    from mappings.config import ConfigError, load_config

    try:
        return load_config(path).portal
    except ConfigError as exc:
        raise PortalNotConfigured(f"the config file has problems:\n{exc}") from None


def _secret(read: Any, where: str) -> str | None:
    """A secret read through the config's reader; a missing file is a clear error, not a traceback."""
    try:
        value = read()
    except OSError as exc:
        raise PortalNotConfigured(f"{where}: cannot read the secret file ({exc.strerror}: {exc.filename})") from None
    return value.get_secret_value() if value is not None else None


def _oauth_auth(oauth: Any, base: Path, path: Path) -> OAuthAuth:
    where = f"{path} [portal.oauth]"
    secret = _secret(lambda: oauth.client_secret(base), where)
    if not secret:
        names = [n for n in (oauth.client_secret_env, oauth.client_secret_file) if n]
        detail = f"{' / '.join(names)} holds nothing" if names else "set client_secret_env or client_secret_file"
        raise PortalNotConfigured(f"{where}: no client secret: {detail}")
    token_file = Path(oauth.token_file).expanduser()
    if not token_file.is_absolute():
        token_file = base / token_file
    store = JsonFileTokenStore(token_file)
    try:
        tokens = store.load()
    except ValueError as exc:
        raise PortalNotConfigured(f"{where}: {exc}") from None
    if tokens is None:
        raise PortalNotConfigured(
            f"{where}: token file {token_file} does not exist; save the application's first token reply "
            "(access_token, refresh_token, client_endpoint) there"
        )
    explicit = "oauth_server" in oauth.model_fields_set
    return OAuthAuth(
        oauth.client_id,
        secret,
        tokens,
        store=store,
        # the server_endpoint of the token reply names the right OAuth server; the config's value is
        # a fallback unless the user set it on purpose
        oauth_server=oauth.oauth_server if explicit or not tokens.server_endpoint else None,
        client_endpoint=oauth.client_endpoint,
    )


def open_client(
    webhook: str | None = None,
    config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
    **options: Any,
) -> Bitrix24Client:
    """A ready client for the portal ``resolve`` finds (HTTP transport unless one is given)."""
    spec = resolve(webhook, config, environ=environ)
    options.setdefault("bucket", LeakyBucket(spec.burst, spec.rate))
    return Bitrix24Client(transport or HttpTransport(), spec.auth, **options)


# ---------------------------------------------------------------- b24sync call


# an admin at a terminal wants an answer within seconds, not the 11 minutes a sync job may wait
CLI_RETRY = RetryPolicy(attempts=4, max_elapsed=120.0)


class CallFailed(Exception):
    """``b24sync call`` could not do its work; the message is safe to print, ``exit_code`` says how."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def parse_cli_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["filter[>ID]=5", "select[]=ID"]`` -> ``{"filter": {">ID": "5"}, "select": ["ID"]}``."""
    split: list[tuple[str, str]] = []
    for text in pairs:
        cut = _assignment(text)
        if cut <= 0:
            raise CallFailed(f"parameters are KEY=VALUE, got {text!r}", 2)
        split.append((text[:cut], text[cut + 1 :]))
    return parse_pairs(split)


def _assignment(text: str) -> int:
    """Index of the ``=`` that ends the key: the first one outside brackets (``filter[<=ID]=5``)."""
    depth = 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        elif char == "=" and depth == 0:
            return index
    return -1


def _pop(params: dict[str, Any], name: str) -> Any:
    for key in list(params):
        if key.lower() == name.lower():
            return params.pop(key)
    return None


def run_call(
    method: str,
    pairs: Iterable[str],
    *,
    webhook: str | None = None,
    config: str | None = None,
    stream_all: bool = False,
    out: TextIO,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
) -> None:
    """``b24sync call``: print one method's result as pretty JSON, or with ``stream_all`` every record as JSON lines."""
    params = parse_cli_pairs(pairs)
    if stream_all and not is_list_method(method):
        raise CallFailed(f"--all needs a list method (crm.deal.list, crm.item.list, user.get...), not {method}", 2)
    try:
        client = open_client(webhook, config, environ=environ, transport=transport, retry=CLI_RETRY)
    except PortalNotConfigured as exc:
        raise CallFailed(redact(str(exc)), 2) from None
    try:
        if stream_all:
            filt = _pop(params, "filter")
            select = _pop(params, "select")
            entity_type_id = _pop(params, "entityTypeId")
            if filt is not None and not isinstance(filt, Mapping):
                raise CallFailed("filter must be nested keys, e.g. filter[>ID]=5", 2)
            if isinstance(select, str):
                select = [select]
            rows = client.list_all(method, filt, select, entity_type_id, params=params)
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
        else:
            reply = client.call(method, params)
            out.write(json.dumps(reply.result, ensure_ascii=False, indent=2) + "\n")
            out.flush()
    except B24Error as exc:
        raise CallFailed(redact(str(exc)), 1) from None
    except ValueError as exc:
        raise CallFailed(redact(str(exc)), 2) from None
    finally:
        client.close()
