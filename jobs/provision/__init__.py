"""Pipelines as code: desired funnels (config) vs the portal's actual ones -> a Plan -> apply; export to TOML.

A ``Plan`` is plain data (Terraform style): changes with a closed ``Action`` plus a fingerprint of
the portal state it was made from. The modules, one idea each:

- ``changes``   plan data: ``Action``, ``Kind``, ``Change``, ``Plan``, saved plans (``read_plan``), errors
- ``snapshot``  what is read from the portal (pipelines, stage dictionaries) and its fingerprint
- ``stages``    ``Stage`` and ``StageList``: the lead statuses or one pipeline's stages, desired or actual
- ``identity``  which portal pipeline a declared pipeline is (recorded keys, pins, adoption)
- ``records``   counting and listing the deals and leads a stage or pipeline holds
- ``diff``      ``plan`` (read, then compare) and ``diff`` (compare, no calls)
- ``order``     the legal order of sort writes (in progress < success < failure at every step)
- ``applying``  ``apply``: checks first, then writes that converge (also with two applies at once)
- ``exporting`` ``export``: the portal's funnels as a config file
- ``rendering`` ``render_plan``: the plan for people

Every function that talks to the portal takes a ``connector.client.Bitrix24Client``.
"""

from __future__ import annotations

from connector.catalog import stage_entity_id as stage_entity
from connector.catalog import stage_prefix
from jobs.provision.applying import ApplyFailed, apply
from jobs.provision.changes import (
    ACTIONS,
    KINDS,
    PLAN_FORMAT,
    PLAN_VERSION,
    Action,
    Change,
    Kind,
    Plan,
    PlanFileError,
    ProvisionError,
    StalePlan,
    read_plan,
)
from jobs.provision.diff import deletion_candidates, diff, plan
from jobs.provision.exporting import export, export_snapshot
from jobs.provision.identity import match_pipelines, portal_key
from jobs.provision.rendering import describe, render_plan
from jobs.provision.snapshot import Snapshot, UnexpectedReply, plan_fingerprint, read_snapshot
from jobs.provision.stages import SEMANTICS_CODE, Stage, StageList

__all__ = [
    "ACTIONS", "KINDS", "PLAN_FORMAT", "PLAN_VERSION", "SEMANTICS_CODE",
    "Action", "ApplyFailed", "Change", "Kind", "Plan", "PlanFileError", "ProvisionError", "Snapshot", "StalePlan",
    "Stage", "StageList", "UnexpectedReply",
    "apply", "deletion_candidates", "describe", "diff", "export", "export_snapshot", "match_pipelines", "plan",
    "plan_fingerprint", "portal_key", "read_plan", "read_snapshot", "render_plan", "stage_entity", "stage_prefix",
]
