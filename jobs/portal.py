"""Where the portal comes from, for every command: ``--webhook``, else ``B24SYNC_WEBHOOK``, else the config;
and how long a command may wait on it: ``--timeout``, else ``B24SYNC_TIMEOUT``, else the command's default.

The config's ``[portal]`` section names an environment variable or a file that holds the webhook
URL (never the URL itself), or an OAuth application in ``[portal.oauth]``, plus the plan's limits.
``run_call`` is the work behind ``b24sync call``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from connector import catalog
from connector.auth import Auth, JsonFileTokenStore, OAuthAuth, Tokens, WebhookAuth
from connector.client import Bitrix24Client, RetryPolicy
from connector.encoding import ParamError, parse_pairs
from connector.errors import B24Error
from connector.ratelimit import RequestPacer
from connector.redact import redact
from connector.transport import HttpTransport, Transport
from jobs.errors import EXIT_USAGE, UserError
from mappings.loader import UnreadableFile, read_text_file

ENV_WEBHOOK = "B24SYNC_WEBHOOK"
ENV_CONFIG = "B24SYNC_CONFIG"
ENV_TIMEOUT = "B24SYNC_TIMEOUT"
DEFAULT_CONFIG = "b24sync.toml"
# a person at a terminal wants an answer (or a clear error) within two minutes, not the 11 minutes
# a scheduled job may wait out an operating-time block; jobs pass their own default
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 86_400.0

HOW_TO = (
    "pass --webhook URL, set the environment variable B24SYNC_WEBHOOK, or give a config file "
    "(--config FILE or B24SYNC_CONFIG) whose [portal] names webhook_env or webhook_file, or has [portal.oauth]"
)

# the portal address (``https://host``) of the client opened last: the CLI names it in errors
current_portal: ContextVar[str | None] = ContextVar("current_portal", default=None)


class PortalNotConfigured(UserError):
    """No usable portal: the message says what is missing (never a secret)."""


@dataclass(frozen=True)
class PortalSpec:
    """A resolved portal: its auth object, the plan's limits, and where it came from (safe to print)."""

    auth: Auth
    burst: float = 50.0
    rate: float = 2.0
    source: str = ""


def config_path(config: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file to read: ``--config``, else ``B24SYNC_CONFIG``, else ``./b24sync.toml`` when it exists.

    An explicitly empty ``--config ""`` is an error (an unset variable in a script), never a fall-back.
    """
    environ = os.environ if environ is None else environ
    if config is not None:
        if not str(config).strip():
            raise PortalNotConfigured("--config is empty: give the path of a config file", exit_code=EXIT_USAGE)
        return Path(config)
    if environ.get(ENV_CONFIG, "").strip():
        return Path(environ[ENV_CONFIG])
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


def timeout_seconds(
    timeout: float | None = None, environ: Mapping[str, str] | None = None, default: float = DEFAULT_TIMEOUT
) -> float:
    """How long one call, batch or page may take in all (``RetryPolicy.max_elapsed``): ``--timeout``,
    else ``B24SYNC_TIMEOUT``, else ``default``. A value that is not a positive number is a usage error."""
    environ = os.environ if environ is None else environ
    if timeout is not None:
        return _checked_timeout(timeout, "--timeout")
    raw = environ.get(ENV_TIMEOUT, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{ENV_TIMEOUT}={raw[:40]!r} is not a number of seconds", exit_code=EXIT_USAGE) from None
    return _checked_timeout(value, ENV_TIMEOUT)


def _checked_timeout(value: float, where: str) -> float:
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT:
        raise UserError(f"{where} must be between 0 and {MAX_TIMEOUT:.0f} seconds, got {value}", exit_code=EXIT_USAGE)
    return float(value)


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
    webhook was given. An explicitly empty ``--webhook ""`` is a usage error, never a fall-back to
    another source (and so possibly another portal). Raises ``PortalNotConfigured`` naming what is missing.
    """
    environ = os.environ if environ is None else environ
    if webhook is not None and not webhook.strip():
        raise PortalNotConfigured(
            "--webhook is empty (an unset variable?): give the webhook URL, or leave the option out "
            "to use B24SYNC_WEBHOOK or the config",
            exit_code=EXIT_USAGE,
        )
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
    url = _secret(lambda: settings.webhook(base), f"{path} [portal]", "webhook_file")
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
    from mappings.loader import ConfigError, load_config

    try:
        return load_config(path).portal
    except ConfigError as exc:
        raise PortalNotConfigured(f"the config file has problems:\n{exc}") from None


def _secret(read: Callable[[], Any], where: str, setting: str) -> str | None:
    """A secret read through the config's reader; an unreadable or non-UTF-8 file is a clear error."""
    try:
        value = read()
    except OSError as exc:
        raise PortalNotConfigured(f"{where}: cannot read the secret file ({exc.strerror}: {exc.filename})") from None
    except UnicodeDecodeError as exc:
        raise PortalNotConfigured(f"{where}: the file named by {setting} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return value.get_secret_value() if value is not None else None


def _oauth_auth(oauth: Any, base: Path, path: Path) -> OAuthAuth:
    where = f"{path} [portal.oauth]"
    secret = _secret(lambda: oauth.client_secret(base), where, "client_secret_file")
    if not secret:
        names = [n for n in (oauth.client_secret_env, oauth.client_secret_file) if n]
        detail = f"{' / '.join(names)} holds nothing" if names else "set client_secret_env or client_secret_file"
        raise PortalNotConfigured(f"{where}: no client secret: {detail}")
    token_file = Path(oauth.token_file).expanduser()
    if not token_file.is_absolute():
        token_file = base / token_file
    tokens = read_tokens(token_file, where)
    explicit = "oauth_server" in oauth.model_fields_set
    return OAuthAuth(
        oauth.client_id,
        secret,
        tokens,
        store=JsonFileTokenStore(token_file),
        # the server_endpoint of the token reply names the right OAuth server; the config's value is
        # a fallback unless the user set it on purpose
        oauth_server=oauth.oauth_server if explicit or not tokens.server_endpoint else None,
        client_endpoint=oauth.client_endpoint,
    )


TOKEN_KEYS = ("access_token", "refresh_token", "client_endpoint")
MAX_TOKEN_BYTES = 1024 * 1024


def read_tokens(token_file: Path, where: str = "token_file") -> Tokens:
    """The OAuth tokens saved in ``token_file``, checked: a JSON object whose ``access_token``,
    ``refresh_token`` and ``client_endpoint`` are non-empty strings. Anything else is a clear error."""
    hint = "save the application's first token reply (access_token, refresh_token, client_endpoint) there"
    try:
        text = read_text_file(token_file, "token file", MAX_TOKEN_BYTES)
    except UnreadableFile as exc:
        raise PortalNotConfigured(f"{where}: {token_file}: {exc}; {hint}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise PortalNotConfigured(f"{where}: token file {token_file} is not JSON; {hint}") from None
    if not isinstance(data, dict):
        raise PortalNotConfigured(f"{where}: token file {token_file} holds JSON but not an object of tokens; {hint}")
    missing = [key for key in TOKEN_KEYS if not isinstance(data.get(key), str) or not data[key].strip()]
    if missing:
        raise PortalNotConfigured(f"{where}: token file {token_file} holds no {', '.join(missing)}; {hint}")
    expires = data.get("expires")
    if expires not in (None, "") and not _is_number(expires):
        raise PortalNotConfigured(f"{where}: token file {token_file}: expires is not a unix time; {hint}")
    try:
        return Tokens.from_reply(data)
    except (B24Error, TypeError, ValueError) as exc:
        raise PortalNotConfigured(f"{where}: token file {token_file} is not usable ({redact(exc)}); {hint}") from None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def portal_address(auth: Auth) -> str:
    """The portal's address ``https://host[:port]`` (safe to print: no code, no token)."""
    origin = getattr(auth, "origin", None)
    if origin:
        return str(origin)
    parts = urlsplit(str(getattr(auth, "client_endpoint", "")))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the portal"


def open_client(
    webhook: str | None = None,
    config: str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = None,
    default_timeout: float = DEFAULT_TIMEOUT,
    attempts: int | None = None,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
    **options: Any,
) -> Bitrix24Client:
    """A ready client for the portal ``resolve`` finds (HTTP transport unless one is given).

    Its deadline (``RetryPolicy.max_elapsed``) is ``timeout``, else ``B24SYNC_TIMEOUT``, else
    ``default_timeout``; an explicit ``retry=`` policy wins over all three. The client bounds every
    wait by it, the HTTP read included.
    """
    seconds = timeout_seconds(timeout, environ, default_timeout)
    spec = resolve(webhook, config, environ=environ)
    if "retry" not in options:
        defaults = RetryPolicy()
        options["retry"] = RetryPolicy(attempts=attempts or defaults.attempts, max_elapsed=seconds)
    options.setdefault("bucket", RequestPacer(burst=spec.burst, rate=spec.rate))
    current_portal.set(portal_address(spec.auth))
    return Bitrix24Client(transport or HttpTransport(), spec.auth, **options)


@dataclass(frozen=True)
class PortalOptions:
    """The portal options of one command (``--webhook``, ``--config``, ``--timeout``) as one value.

    ``timeout`` None means ``B24SYNC_TIMEOUT``, else ``default_timeout`` (the command's own default).
    """

    webhook: str | None = None
    config: str | None = None
    timeout: float | None = None
    default_timeout: float = DEFAULT_TIMEOUT

    def config_path(self, environ: Mapping[str, str] | None = None) -> Path | None:
        """The config file these options name (``--config``, ``B24SYNC_CONFIG``, ``./b24sync.toml``)."""
        return config_path(self.config, environ)

    def seconds(self, environ: Mapping[str, str] | None = None) -> float:
        """The deadline of one call, batch or page for this command."""
        return timeout_seconds(self.timeout, environ, self.default_timeout)

    def open_client(self, **options: Any) -> Bitrix24Client:
        """``open_client`` with these options; close it when done (or use ``client()``)."""
        return open_client(self.webhook, self.config, timeout=self.timeout, default_timeout=self.default_timeout, **options)

    @contextmanager
    def client(self, **options: Any) -> Iterator[Bitrix24Client]:
        """``with portal.client() as client:`` a client that is closed afterwards."""
        client = self.open_client(**options)
        try:
            yield client
        finally:
            client.close()


# ---------------------------------------------------------------- b24sync call


CALL_ATTEMPTS = 4
# list_all exports in ID order from the first record: these parameters of a list call cannot apply
IGNORED_BY_ALL = ("order", "start")


class CallFailed(UserError):
    """``b24sync call`` could not do its work; the message is safe to print, ``exit_code`` says how."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message, exit_code=exit_code)


def parse_cli_pairs(pairs: Iterable[str]) -> dict[str, Any]:
    """``["filter[>ID]=5", "select[]=ID"]`` -> ``{"filter": {">ID": "5"}, "select": ["ID"]}``.

    A pair without ``=``, or keys the encoder refuses (``ParamError``: nested too deep, too many), is a usage error.
    """
    split: list[tuple[str, str]] = []
    for text in pairs:
        cut = _assignment(text)
        if cut <= 0:
            raise CallFailed(f"parameters are KEY=VALUE, got {_short(text)!r}", EXIT_USAGE)
        if text.startswith("["):
            raise CallFailed(f"parameters: the key of {_short(text)!r} has no name before its brackets", EXIT_USAGE)
        split.append((text[:cut], text[cut + 1 :]))
    try:
        params = parse_pairs(split)
    except ParamError as exc:  # nested too deep, too many pairs
        raise CallFailed(f"parameters: {redact(exc)}", EXIT_USAGE) from None
    if not isinstance(params, dict):  # e.g. keys 0, 1, 2...: the parameters of a call are named
        raise CallFailed("parameters: a call takes named parameters (KEY=VALUE), not a list", EXIT_USAGE)
    return params


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


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


def check_method(method: str) -> str:
    """``method`` when it is a REST method name (``connector.catalog.check_method``); a usage error
    before any request otherwise (the message does not echo the name: a pasted URL may hold a secret)."""
    try:
        return catalog.check_method(method)
    except catalog.InvalidMethodName as exc:
        raise CallFailed(f"METHOD: {exc}", EXIT_USAGE) from None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def run_call(
    method: str,
    pairs: Iterable[str],
    *,
    portal: PortalOptions | None = None,
    stream_all: bool = False,
    out: TextIO,
    warn: Callable[[str], None] = _warn,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
) -> None:
    """``b24sync call``: print one method's result as pretty JSON, or with ``stream_all`` every record as JSON lines.

    Everything about the arguments is checked before the first request: the method name, the
    pairs, ``--all`` on a method that is not a list. With ``--all``, ``order`` and ``start`` are
    ignored (the export runs in ID order from the first record) and ``warn`` says so.
    """
    portal = portal or PortalOptions()
    check_method(method)
    params = parse_cli_pairs(pairs)
    if stream_all and not catalog.is_list_method(method):
        raise CallFailed(f"--all needs a list method (crm.deal.list, crm.item.list, user.get...), not {method}", EXIT_USAGE)
    filt = select = entity_type_id = None
    if stream_all:
        filt = _pop(params, "filter")
        select = _pop(params, "select")
        entity_type_id = _pop(params, "entityTypeId")
        if filt is not None and not isinstance(filt, Mapping):
            raise CallFailed("filter must be nested keys, e.g. filter[>ID]=5", EXIT_USAGE)
        if isinstance(select, str):
            select = [select]
        ignored = [name for name in IGNORED_BY_ALL if _pop(params, name) is not None]
        if ignored:
            warn(f"--all exports every record in ID order from the first one: {' and '.join(ignored)} ignored")
    try:
        client = portal.open_client(environ=environ, transport=transport, attempts=CALL_ATTEMPTS)
    except PortalNotConfigured as exc:
        raise CallFailed(redact(exc), EXIT_USAGE) from None
    try:
        if stream_all:
            for row in client.list_all(method, filt, select, entity_type_id, params=params):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
        else:
            reply = client.call(method, params)
            out.write(json.dumps(reply.result, ensure_ascii=False, indent=2) + "\n")
            out.flush()
    except B24Error:
        raise
    except ValueError as exc:
        raise CallFailed(redact(exc), EXIT_USAGE) from None
    finally:
        client.close()
