"""The b24sync TOML config as pydantic models: portal, database, schedule, lead statuses, deal pipelines.

Every field has a description. ``mappings.loader`` reads a file into these models (reporting every
problem at once as a ``ConfigError``); ``mappings.rules`` holds the funnel rules checked across fields.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

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
    # named schema_name in Python: pydantic's BaseModel already has a (deprecated) ``schema`` method
    schema_name: str | None = Field(
        default=None, alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL only: the schema that holds this mirror (created on upgrade), so that several "
        "portals can share one database; lower-case latin letters, digits and _.",
    )

    def resolved_url(self) -> SecretStr:
        """The database URL, from ``url_env`` when that variable is set, else ``url``."""
        if self.url_env and os.environ.get(self.url_env):
            return SecretStr(os.environ[self.url_env])
        return self.url


class ScheduleConfig(_Model):
    """When the worker runs its jobs: incremental sync, reconcile of deletions, funnel reports.

    Cron lines are 5-field crontab lines in the portal's time (its UTC offset as the mirror recorded it).
    """

    sync_every_minutes: int = Field(default=15, ge=1, le=1440, description="Minutes between incremental syncs.")
    sync_every_seconds: int | None = Field(
        default=None, ge=1, le=86400,
        description="Seconds between incremental syncs, instead of sync_every_minutes (tests, busy portals).",
    )
    sync_cron: str | None = Field(
        default=None, description="Crontab line for the incremental sync instead of an interval, e.g. '*/10 8-20 * * *'."
    )
    reconcile_cron: str | None = Field(
        default=None,
        description="Crontab line for the reconcile run that catches deletions (ID sets compared), e.g. '0 3 * * *'; "
        "without it the worker does not look for records deleted on the portal.",
    )
    report_cron: str | None = Field(
        default=None, description="Crontab line (5 fields, portal time) for the funnel report, e.g. '0 8 * * MON'."
    )
    reports_dir: str | None = Field(
        default=None, min_length=1,
        description="Folder (relative to the config file) where the worker writes the deal and lead funnel reports "
        "(HTML and CSV); on report_cron, or after every sync without it. No reports when omitted.",
    )

    @field_validator("sync_cron", "reconcile_cron", "report_cron")
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

    @model_validator(mode="after")
    def _one_sync_timetable(self) -> "ScheduleConfig":
        given = [name for name in ("sync_every_minutes", "sync_every_seconds", "sync_cron") if name in self.model_fields_set]
        if len(given) > 1:
            raise ValueError(f"set one of sync_every_minutes, sync_every_seconds, sync_cron, not {' and '.join(given)}")
        return self


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


def inner_model(annotation: Any) -> type[BaseModel] | None:
    """The config model inside a field's annotation (``LeadsConfig | None`` -> ``LeadsConfig``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = inner_model(arg)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------- problems of a config file


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
