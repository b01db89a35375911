"""The b24sync TOML config as pydantic models: portal, database, schedule, lead statuses, deal pipelines.

``load_config`` reads a file and reports every problem at once (TOML syntax, unknown settings,
bad values, broken funnel rules), each with its location and line, before any API call is made.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

# ---------------------------------------------------------------- portal rules the config must follow

SEMANTICS = ("process", "success", "failure")
Semantics = Literal["process", "success", "failure"]

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
COLOR_PATTERN = re.compile(r"^#[0-9A-Fa-f]{6}$")
# crm.status.add: STATUS_ID of lead statuses (ENTITY_ID STATUS) is at most 21 characters, of deal
# stages at most 22 (for a non-default pipeline the C{N}: prefix counts too; checked at plan time).
LEAD_KEY_MAX = 21
DEAL_KEY_MAX = 22
PIPELINE_KEY_MAX = 50
NAME_MAX = 255
SORT_STEP = 10  # stage sort values derived from the order: 10, 20, 30...
PIPELINE_SORT_STEP = 100  # pipeline sort values derived from the order: 100, 200, 300...


class _Model(BaseModel):
    """Base of every config model: unknown settings are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _read_secret(env: str | None, file: str | None, base: Path | None) -> SecretStr | None:
    """The secret named by an environment variable or held in a file; None when neither is set."""
    if env and os.environ.get(env):
        return SecretStr(os.environ[env].strip())
    if file:
        path = Path(file).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        return SecretStr(path.read_text(encoding="utf-8").strip())
    return None


# ---------------------------------------------------------------- [portal]


class OAuthConfig(_Model):
    """OAuth 2 application credentials for ``[portal.oauth]`` (a local or market application)."""

    client_id: str = Field(description="The application's client_id (not a secret), e.g. 'local.6523a1b2c3d4e5.12345678'.")
    client_secret_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the client_secret."
    )
    client_secret_file: str | None = Field(
        default=None, description="Path of a file that holds the client_secret (relative to the config file)."
    )
    token_file: str = Field(
        default="b24sync-token.json",
        description="Where access and refresh tokens are kept; rewritten atomically after every refresh.",
    )
    client_endpoint: str | None = Field(
        default=None,
        description="REST endpoint of the portal, e.g. 'https://example.bitrix24.ru/rest/'; "
        "taken from the token reply when omitted.",
    )
    oauth_server: str = Field(
        default="https://oauth.bitrix.info/",
        description="OAuth server that refreshes tokens: oauth.bitrix.info (.com portals) or oauth.bitrix24.tech (.ru).",
    )

    def client_secret(self, base: Path | None = None) -> SecretStr | None:
        """The client_secret read from ``client_secret_env`` or ``client_secret_file``."""
        return _read_secret(self.client_secret_env, self.client_secret_file, base)


class PortalConfig(_Model):
    """Where the Bitrix24 portal is: an incoming webhook (named, never written here) or OAuth."""

    webhook_env: str | None = Field(
        default="B24SYNC_WEBHOOK",
        description="Name of the environment variable holding the inbound webhook URL "
        "(https://PORTAL/rest/USER/CODE/). The URL contains a secret, so it never goes in this file.",
    )
    webhook_file: str | None = Field(
        default=None, description="Path of a file holding the inbound webhook URL (relative to the config file)."
    )
    rate: float = Field(
        default=2.0, gt=0, description="Requests per second the portal drains from its leaky bucket (2; Enterprise 5)."
    )
    burst: int = Field(
        default=50, ge=1, description="Size of the portal's leaky bucket: requests allowed in a burst (50; Enterprise 250)."
    )
    oauth: OAuthConfig | None = Field(default=None, description="OAuth application settings instead of a webhook.")

    def webhook(self, base: Path | None = None) -> SecretStr | None:
        """The webhook URL read from ``webhook_env`` or ``webhook_file``; None when neither is set."""
        return _read_secret(self.webhook_env, self.webhook_file, base)


# ---------------------------------------------------------------- [database], [schedule]


class DatabaseConfig(_Model):
    """The SQL database that mirrors the CRM."""

    url: SecretStr = Field(
        default=SecretStr("sqlite:///b24sync.sqlite3"),
        description="SQLAlchemy URL, e.g. 'sqlite:///b24sync.sqlite3' or 'postgresql+psycopg://user@host/db'. "
        "Kept secret in output because a URL may carry a password; prefer url_env for passwords.",
    )
    url_env: str | None = Field(
        default=None, description="Name of an environment variable holding the URL; wins over url when set."
    )

    def resolved_url(self) -> SecretStr:
        """The database URL, from ``url_env`` when that variable is set, else ``url``."""
        if self.url_env and os.environ.get(self.url_env):
            return SecretStr(os.environ[self.url_env])
        return self.url


class ScheduleConfig(_Model):
    """When the worker runs its jobs."""

    sync_every_minutes: int = Field(default=15, ge=1, le=1440, description="Minutes between incremental syncs.")
    report_cron: str | None = Field(
        default=None, description="Crontab line (5 fields, portal time) for the funnel report, e.g. '0 8 * * MON'."
    )

    @field_validator("report_cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a 5-field crontab line ({exc})") from None
        return value


# ---------------------------------------------------------------- lead statuses and deal pipelines


def _check_key(value: str) -> str:
    if not KEY_PATTERN.match(value):
        raise ValueError(f"key {value!r} may only hold latin letters, digits, '_' and '-'")
    return value


def _check_name(value: str) -> str:
    if not value.strip():
        raise ValueError("name must not be blank")
    return value


Key = Annotated[str, AfterValidator(_check_key)]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX), AfterValidator(_check_name)]


class StageConfig(_Model):
    """One deal stage or lead status. Its position in the file is its position in the funnel."""

    key: Key = Field(
        description="Stable identity: the portal's STATUS_ID, without the C{N}: prefix of non-default pipelines "
        "(write PREPARATION, not C3:PREPARATION). Renames and reorders keep it; latin letters, digits, _ and -."
    )
    name: Name = Field(description="Name shown in the CRM.")
    semantics: Semantics = Field(
        default="process",
        description="process (in progress), success (the one won stage) or failure (lost). "
        "Fixed once the stage exists on the portal.",
    )
    color: str | None = Field(default=None, description="Colour '#RRGGBB'; left as the portal has it when omitted.")
    sort: int | None = Field(
        default=None,
        ge=0,
        description="Explicit SORT, not lower than the previous stage's (equal values are ordered by the portal's ID); "
        "derived from the order (previous + 10) when omitted.",
    )

    @field_validator("color")
    @classmethod
    def _color(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not COLOR_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a colour: write it as #RRGGBB, e.g. #39A8EF")
        return value.upper()


class LeadsConfig(_Model):
    """Lead statuses (the portal's STATUS dictionary). Omit the section to leave them unmanaged."""

    statuses: list[StageConfig] = Field(description="Lead statuses in funnel order.")
    move_records: dict[str, str] = Field(
        default_factory=dict,
        description="Statuses to remove that may still hold leads: OLD_KEY = \"DECLARED_KEY\". "
        "Their leads are moved there before the status is deleted.",
    )


class PipelineConfig(_Model):
    """One deal pipeline (crm.category) with its stages."""

    key: Key = Field(
        description="Stable identity of the pipeline in this file and on the portal (recorded in the pipeline's "
        "originId), surviving renames and moves between portals. Latin letters, digits, _ and -."
    )
    name: Name = Field(description="Pipeline name shown in the CRM.")
    default: bool = Field(default=False, description="True for the portal's default pipeline (id 0). Exactly one may say so.")
    id: int | None = Field(
        default=None,
        ge=1,
        description="Optional pin to an existing pipeline id on this portal, to adopt a pipeline made by hand. "
        "Portal-specific: remove it before applying the file to another portal.",
    )
    sort: int | None = Field(default=None, ge=0, description="Explicit sort; derived from the order (100, 200...) when omitted.")
    stages: list[StageConfig] = Field(description="Stages in funnel order: in progress first, then success, then failure.")
    move_records: dict[str, str] = Field(
        default_factory=dict,
        description="Stages to remove that may still hold deals: OLD_KEY = \"DECLARED_KEY\". "
        "Their deals are moved there (within this pipeline) before the stage is deleted.",
    )


class Config(_Model):
    """The whole b24sync config file."""

    portal: PortalConfig = Field(default_factory=PortalConfig, description="The Bitrix24 portal and its limits.")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, description="The SQL mirror.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="The worker's timetable.")
    leads: LeadsConfig | None = Field(default=None, description="Lead statuses; unmanaged when the section is absent.")
    pipelines: list[PipelineConfig] | None = Field(
        default=None,
        description="Deal pipelines; unmanaged when absent. When present the list is complete: "
        "portal pipelines not listed are planned for deletion.",
    )


def derived_sorts(explicit: list[int | None], step: int) -> list[int]:
    """Each explicit value as is, else the previous value plus ``step`` (the first is ``step``)."""
    result: list[int] = []
    previous = 0
    for value in explicit:
        previous = value if value is not None else previous + step
        result.append(previous)
    return result


def stage_sorts(stages: list[StageConfig]) -> list[int]:
    """SORT of each stage: explicit, else the previous value plus 10."""
    return derived_sorts([s.sort for s in stages], SORT_STEP)


def pipeline_sorts(pipelines: list[PipelineConfig]) -> list[int]:
    """Sort of each pipeline: explicit, else the previous value plus 100."""
    return derived_sorts([p.sort for p in pipelines], PIPELINE_SORT_STEP)


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file: where (dotted location, line, column) and what."""

    location: str
    message: str
    line: int | None = None
    column: int | None = None
    source: str = ""

    def __str__(self) -> str:
        where = self.source or "config"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        location = f" {self.location}:" if self.location else ""
        return f"{where}:{location} {self.message}"


class ConfigError(Exception):
    """A config file with problems; ``problems`` lists all of them, in file order."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.location))
        super().__init__("\n".join(str(p) for p in self.problems))


# ---------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise ConfigError with every problem found."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", "config file not found", source=source)]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem("", f"not UTF-8 text ({exc.reason} at byte {exc.start})", source=source)]) from None
    return parse_config(text, source=source)


def parse_config(text: str, source: str = "config") -> Config:
    """Validate TOML text as a config; raise ConfigError with every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_problem(exc, source, text)]) from None
    lines = toml_lines(text)
    problems: list[Problem] = []
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, data))
    problems.extend(funnel_problems(data))
    if problems:
        located = []
        seen = set()
        for p in problems:
            line = _find_line(lines, p.location)
            key = (p.location, p.message)
            if key not in seen:
                seen.add(key)
                located.append(Problem(p.location, p.message, line, None, source))
        raise ConfigError(located)
    assert config is not None
    return config


def _syntax_problem(exc: tomllib.TOMLDecodeError, source: str, text: str) -> Problem:
    message = str(exc)
    line = column = None
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        message = message[: match.start()].strip()
    elif getattr(exc, "lineno", None):
        line, column = exc.lineno, exc.colno  # type: ignore[attr-defined]
    if message == "Cannot overwrite a value" and line is not None:
        location = _key_at(text, line)
        if location:  # tomllib names neither the key nor a useful column (it points past the value)
            return Problem(location, f"set twice (TOML syntax error: {message})", line, None, source)
    return Problem("", f"TOML syntax error: {message}", line, column, source)


def _key_at(text: str, line: int) -> str:
    """The dotted location of the key set on ``line`` (1-based), e.g. 'pipelines[0].stages[1].name'; '' if none."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    key = _KEYLINE.match(lines[line - 1])
    if key is None:
        return ""
    header_line = next((n for n in range(line - 1, 0, -1) if _HEADER.match(lines[n - 1]) and not lines[n - 1].lstrip().startswith("#")), None)
    table: tuple[Any, ...] = ()
    if header_line is not None:
        before = toml_lines("\n".join(lines[:header_line]))
        table = max((path for path, n in before.items() if n == header_line), key=len, default=())
    return location_text(table + tuple(_split_dotted(key.group(1))))


def location_text(loc: tuple[Any, ...]) -> str:
    """('pipelines', 1, 'stages', 3, 'color') -> 'pipelines[1].stages[3].color'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _pydantic_problems(exc: ValidationError, data: dict[str, Any]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc = tuple(part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-")))
        kind = err["type"]
        message = err["msg"]
        if kind == "extra_forbidden":
            name = str(loc[-1])
            allowed = _allowed_fields(loc[:-1], data)
            hint = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
            message = f"unknown setting {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            if allowed:
                message += f"; allowed here: {', '.join(sorted(allowed))}"
        elif kind == "missing":
            message = f"missing required setting {str(loc[-1])!r}"
        elif kind == "literal_error" and loc and loc[-1] == "semantics":
            message = f"unknown semantics {err.get('input')!r}: use one of {', '.join(SEMANTICS)}"
        elif kind == "value_error":
            message = message.removeprefix("Value error, ")
        problems.append(Problem(location_text(loc), message))
    return problems


def _allowed_fields(loc: tuple[Any, ...], data: dict[str, Any]) -> list[str]:
    """Field names of the model found at ``loc`` (for 'did you mean' hints)."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _inner_model(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------- funnel rules (checked on the raw data)


def funnel_problems(data: dict[str, Any]) -> list[Problem]:
    """Cross-field rules of lead statuses and pipelines, checked on raw TOML data so that every
    problem is reported even when other parts of the file do not validate."""
    problems: list[Problem] = []
    leads = data.get("leads")
    if isinstance(leads, dict) and isinstance(leads.get("statuses"), list):
        problems += _funnel_rules(leads["statuses"], leads.get("move_records"), "leads", LEAD_KEY_MAX, "lead status")
    pipelines = data.get("pipelines")
    if isinstance(pipelines, list):
        problems += _pipeline_rules(pipelines)
        for i, pipeline in enumerate(pipelines):
            if isinstance(pipeline, dict) and isinstance(pipeline.get("stages"), list):
                problems += _funnel_rules(
                    pipeline["stages"], pipeline.get("move_records"), f"pipelines[{i}]", DEAL_KEY_MAX, "stage"
                )
    return problems


def _pipeline_rules(pipelines: list[Any]) -> list[Problem]:
    problems: list[Problem] = []
    keys: dict[str, int] = {}
    ids: dict[int, int] = {}
    defaults: list[int] = []
    for i, pipeline in enumerate(pipelines):
        if not isinstance(pipeline, dict):
            continue
        where = f"pipelines[{i}]"
        key = pipeline.get("key")
        if isinstance(key, str):
            if key.lower() in keys:
                problems.append(
                    Problem(f"{where}.key", f"duplicate pipeline key {key!r} (first used by pipelines[{keys[key.lower()]}])")
                )
            else:
                keys[key.lower()] = i
            if len(key) > PIPELINE_KEY_MAX:
                problems.append(Problem(f"{where}.key", f"pipeline key {key!r} is longer than {PIPELINE_KEY_MAX} characters"))
        if pipeline.get("default") is True:
            defaults.append(i)
            if pipeline.get("id") is not None:
                problems.append(Problem(f"{where}.id", "the default pipeline is always id 0; remove id"))
        pin = pipeline.get("id")
        if isinstance(pin, int) and not isinstance(pin, bool):
            if pin in ids:
                problems.append(Problem(f"{where}.id", f"pipeline id {pin} is pinned twice (also pipelines[{ids[pin]}])"))
            else:
                ids[pin] = i
    if not defaults:
        problems.append(
            Problem("pipelines", "no default pipeline: exactly one must say default = true "
                    "(the portal's pipeline id 0, which always exists and cannot be deleted)")
        )
    for i in defaults[1:]:
        problems.append(
            Problem(f"pipelines[{i}].default", f"a second default pipeline; the portal has one (pipelines[{defaults[0]}])")
        )
    return problems


def _funnel_rules(
    stages: list[Any], moves: Any, where: str, key_max: int, noun: str
) -> list[Problem]:
    """Rules of one funnel: unique keys, exactly one success stage, a failure stage, the order
    in progress < success < failure, increasing sort values, and valid record moves."""
    problems: list[Problem] = []
    items = "statuses" if where == "leads" else "stages"
    plural = "lead statuses" if where == "leads" else "stages"
    seen: dict[str, int] = {}
    success: list[int] = []
    failures = 0
    processes = 0
    rank = {"process": 0, "success": 1, "failure": 2}
    highest = -1  # highest semantics rank seen so far, for the order rule
    highest_key = ""
    last_sort: int | None = None
    previous = 0
    unknown = False
    for j, stage in enumerate(stages):
        if not isinstance(stage, dict):
            continue
        at = f"{where}.{items}[{j}]"
        key = stage.get("key")
        if isinstance(key, str):
            folded = key.upper()
            if folded in seen:
                problems.append(Problem(f"{at}.key", f"duplicate {noun} key {key!r} (first at {items}[{seen[folded]}])"))
            else:
                seen[folded] = j
            if KEY_PATTERN.match(key) and len(key) > key_max:
                problems.append(
                    Problem(f"{at}.key", f"{noun} key {key!r} is longer than {key_max} characters (the portal's STATUS_ID limit)")
                )
        semantics = stage.get("semantics", "process")
        if semantics not in rank:
            unknown = True  # reported by the model; the group rules below would only echo it
        else:
            if semantics == "success":
                success.append(j)
                if len(success) == 2:
                    first = stages[success[0]].get("key", success[0])
                    problems.append(
                        Problem(f"{at}.semantics", f"a second success {noun}: the portal allows exactly one (first: {first!r})")
                    )
            elif semantics == "failure":
                failures += 1
            else:
                processes += 1
            if rank[semantics] < highest:
                problems.append(
                    Problem(
                        f"{at}.semantics",
                        f"{semantics} {noun} {key!r} comes after {SEMANTICS[highest]} {noun} {highest_key!r}: "
                        "Bitrix24 orders in progress, then success, then failure",
                    )
                )
            elif rank[semantics] > highest:
                highest, highest_key = rank[semantics], key
        sort = stage.get("sort")
        if isinstance(sort, int) and not isinstance(sort, bool):
            if last_sort is not None and 0 <= sort < previous:
                problems.append(
                    Problem(f"{at}.sort", f"sort {sort} is lower than the previous {noun}'s {previous} (order = position in the file)")
                )
            value = sort
        else:
            value = previous + SORT_STEP
        last_sort = previous = value
    if stages and not unknown:
        if not success:
            problems.append(Problem(f"{where}.{items}", f"no success {noun}: the portal needs exactly one (semantics = \"success\")"))
        if not failures:
            problems.append(Problem(f"{where}.{items}", f"no failure {noun}: the portal needs at least one (semantics = \"failure\")"))
        if not processes:
            problems.append(Problem(f"{where}.{items}", f"no in-progress {noun}: the funnel needs at least one (semantics = \"process\")"))
    elif not stages:
        problems.append(Problem(f"{where}.{items}", f"no {plural} declared"))
    if isinstance(moves, dict):
        for old, new in moves.items():
            at = f"{where}.move_records.{old}"
            if not KEY_PATTERN.match(str(old)):
                problems.append(Problem(at, f"key {old!r} may only hold latin letters, digits, '_' and '-'"))
            if str(old).upper() in seen:
                problems.append(Problem(at, f"{old!r} is still declared; records are only moved off {plural} being removed"))
            if not isinstance(new, str):
                problems.append(Problem(at, "the target must be the key of a declared " + noun))
            elif new.upper() not in seen:
                problems.append(Problem(at, f"target {new!r} is not a declared {noun} of this funnel"))
    return problems


# ---------------------------------------------------------------- TOML line map


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*(\]\]?)\s*(#.*)?$")
_KEYLINE = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def toml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table and key of a TOML document to its line (1-based), with array-of-table indices:
    ``('pipelines', 1, 'stages', 3, 'color') -> 57``. Best effort: used only to point at problems."""
    lines: dict[tuple[Any, ...], int] = {}
    counts: dict[tuple[Any, ...], int] = {}
    arrays: set[tuple[Any, ...]] = set()
    current: tuple[Any, ...] = ()
    in_multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if raw.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(raw)
        if header and not raw.lstrip().startswith("#"):
            names = _split_dotted(header.group(2))
            path: tuple[Any, ...] = ()
            for name in names[:-1]:
                path += (name,)
                if path in arrays:
                    path += (counts[path] - 1,)
            path += (names[-1],)
            if header.group(1) == "[[":
                arrays.add(path)
                counts[path] = counts.get(path, 0) + 1
                lines.setdefault(path, number)
                path += (counts[path] - 1,)
            lines[path] = number
            current = path
            continue
        key = _KEYLINE.match(raw)
        if key and not raw.lstrip().startswith("#"):
            path = current + tuple(_split_dotted(key.group(1)))
            lines.setdefault(path, number)
            rest = raw[key.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
    return lines


def _find_line(lines: dict[tuple[Any, ...], int], location: str) -> int | None:
    """The line of the longest prefix of ``location`` found in the line map."""
    loc: list[Any] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", location):
        loc.append(int(index) if index else name)
    while loc:
        found = lines.get(tuple(loc))
        if found is not None:
            return found
        loc.pop()
    return None
