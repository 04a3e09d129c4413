"""prefect.yaml, generated from the campaign files: one source of truth for both schedulers.

``prefect.yaml`` holds two kinds of deployment:

- the **stage deployments** (daily, sync, train, triggers, audiences): written by hand, kept as they are in the
  existing file (the daily run's cron is changed there); the defaults below when there is no file yet;
- the **campaign deployments**, generated: ``run-campaign`` (any campaign, run from the Prefect UI with a form:
  ``name`` and ``as_of``) and one per campaign with a ``schedule:`` (``flows/campaign.py:campaign_flow`` with
  ``{name: <campaign>}``, the file's cron and time zone, active when the file's schedule is active and the
  campaign is enabled).

``omnicast deployments write`` writes the file; ``--check`` (and ``tests/flows/test_deployments.py``) fails naming
what drifted. ``omnicast worker`` (flows/worker.py) runs the same schedules without a Prefect server.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from models.campaigns import Campaign, Catalog
from models.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = Path("prefect.yaml")
"""Where `omnicast deployments write` writes (the folder `prefect deploy --all` runs in)."""
WORK_POOL = "omnicast"
CAMPAIGN_ENTRYPOINT = "flows/campaign.py:campaign_flow"
DAILY_ENTRYPOINT = "flows/daily.py:daily_flow"
RUN_CAMPAIGN = "run-campaign"
PREFECT_VERSION = "3.9.1"

HEADER = """\
# Prefect deployments for omnicast, written by `omnicast deployments write` from campaigns/*.yaml: edit a campaign's
# schedule in its file, then run `omnicast deployments write` (a test fails while this file and the campaign files
# disagree). The stage deployments (daily, sync, train, triggers, audiences) are kept as written here: change the
# daily run's cron below and the next `omnicast deployments write` keeps it; `omnicast worker` reads it too.
#
#   .venv/bin/prefect work-pool create omnicast --type process
#   .venv/bin/prefect deploy --all                # from this folder
#   .venv/bin/prefect worker start --pool omnicast
#
# The daily run does the day's data work and the triggered campaigns; each broadcast (a campaign with a schedule)
# is its own deployment and goes when its schedule says. `run-campaign` runs any campaign from the UI.
"""


def _stage(name: str, description: str, entrypoint: str, cron: str, active: bool) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "entrypoint": entrypoint,
        "work_pool": {"name": WORK_POOL},
        "schedules": [{"cron": cron, "timezone": "America/Los_Angeles", "active": active}],
    }


DEFAULT_STAGES: tuple[dict[str, Any], ...] = (
    _stage("daily", "Every morning: sync → train → triggers → triggered campaigns + audiences → dispatch "
           "(broadcasts go on their own schedules).", DAILY_ENTRYPOINT, "0 6 * * *", True),
    _stage("sync", "Load Shopify, CRM and analytics exports; quarantine bad rows; unify profiles.",
           "flows/sync.py:sync_flow", "0 */4 * * *", False),
    _stage("train", "Fit the hybrid recommender and store top picks with explanations.",
           "flows/train.py:train_flow", "30 2 * * *", False),
    _stage("triggers", "Detect birthdays, replenishment, churn risk and abandoned carts.",
           "flows/triggers.py:triggers_flow", "0 5 * * *", False),
    _stage("audiences", "Add new members to the Meta and Google audiences (hashed identifiers only).",
           "flows/audiences.py:audiences_flow", "0 4 * * *", False),
)  # fmt: skip
"""The stage deployments when there is no prefect.yaml yet. Each stage is also part of the daily run; their own
schedules start paused (enable one in the UI to split the day into separately scheduled stages)."""


@dataclass(frozen=True)
class ScheduledRun:
    """One active schedule of one deployment: what `omnicast worker` runs, when."""

    deployment: str
    entrypoint: str
    parameters: dict[str, Any]
    cron: str
    timezone: str


def stage_deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The hand-written deployments of an existing prefect.yaml (every one that is not a campaign's), as written;
    :data:`DEFAULT_STAGES` when the file does not exist."""
    if not path.exists():
        return copy.deepcopy(list(DEFAULT_STAGES))
    return [d for d in _read_deployments(path) if d.get("entrypoint") != CAMPAIGN_ENTRYPOINT]


def _read_deployments(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"{path} cannot be read as YAML ({exc}); fix it, or delete it and run "
                         "`omnicast deployments write` to start from the defaults") from exc  # fmt: skip
    deployments = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(deployments, list) or not all(isinstance(d, dict) and d.get("name") for d in deployments):
        raise InputError(f"{path}: 'deployments' is not a list of deployments with a name each; fix it, or delete "
                         "the file and run `omnicast deployments write` to start from the defaults")  # fmt: skip
    return deployments


def scheduled_campaigns(catalog: Catalog) -> list[Campaign]:
    """The campaigns that have a schedule (the broadcasts), by name."""
    return sorted((c for c in catalog.campaigns if c.spec.schedule is not None), key=lambda c: c.name)


def campaign_deployment(campaign: Campaign) -> dict[str, Any]:
    """The deployment of one scheduled campaign: campaign_flow with its name, on the file's cron and time zone."""
    schedule = campaign.spec.schedule
    assert schedule is not None
    description = campaign.spec.description.strip() or f"The {campaign.name} campaign."
    source = f"{campaign.file.parent.name}/{campaign.file.name}"
    if not campaign.spec.enabled:
        description += f" Disabled in {source} (enabled: false): its schedule is paused."
    return {
        "name": campaign.name,
        "description": f"{description} Generated from {source}.",
        "entrypoint": CAMPAIGN_ENTRYPOINT,
        "parameters": {"name": campaign.name},
        "tags": ["campaign", campaign.kind],
        "work_pool": {"name": WORK_POOL},
        "schedules": [
            {"cron": schedule.cron, "timezone": schedule.timezone, "active": schedule.active and campaign.spec.enabled}
        ],
    }


def run_campaign_deployment(catalog: Catalog) -> dict[str, Any]:
    """``run-campaign``: any campaign, on demand from the Prefect UI (its form asks for the name and the day)."""
    names = ", ".join(sorted(catalog.names)) or "none yet"
    return {
        "name": RUN_CAMPAIGN,
        "description": f"Run one campaign now: give its name ({names}) and, to plan another day, as_of "
        "(YYYY-MM-DD). The ledger makes a second run of the same campaign and day send nothing new.",
        "entrypoint": CAMPAIGN_ENTRYPOINT,
        "tags": ["campaign"],
        "work_pool": {"name": WORK_POOL},
        "schedules": [],
    }


def deployments(catalog: Catalog, stages: Sequence[dict[str, Any]] = DEFAULT_STAGES) -> list[dict[str, Any]]:
    """Every deployment of prefect.yaml, in order: the stages, ``run-campaign``, then each scheduled campaign."""
    found = [copy.deepcopy(dict(stage)) for stage in stages]
    found.append(run_campaign_deployment(catalog))
    found += [campaign_deployment(campaign) for campaign in scheduled_campaigns(catalog)]
    seen: dict[str, str] = {}
    for deployment in found:
        name, entrypoint = str(deployment["name"]), str(deployment.get("entrypoint", ""))
        if name in seen:
            raise InputError(
                f"deployment name {name!r} is used twice in prefect.yaml ({seen[name]} and {entrypoint}); a "
                "campaign cannot share its name with a stage deployment or run-campaign: rename the campaign"
            )
        seen[name] = entrypoint
    return found


def deployments_yaml(catalog: Catalog, stages: Sequence[dict[str, Any]] = DEFAULT_STAGES) -> str:
    """The text of prefect.yaml for ``catalog``'s campaigns and the ``stages`` (the stage deployments as written)."""
    settings = {"name": "omnicast", "prefect-version": PREFECT_VERSION, "build": None, "push": None}
    pull = {"pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}]}
    parts = [
        HEADER,
        _dump(settings),
        "# The worker runs flows from the folder `prefect deploy` was run in (this clone, with its .venv and .env).\n"
        + _dump(pull),
        "deployments:\n" + "\n".join(_indent(_dump([d])) for d in deployments(catalog, stages)),
    ]
    return "\n".join(parts)


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key; crons and templates quoted; one deployment per paragraph."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    quoted = "{{" in value or (" " in value and not value.strip(_CRON_CHARS))
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quoted else None)


_CRON_CHARS = "0123456789*/,- "
_Dumper.add_representer(str, _str)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=116, default_flow_style=False)


def _indent(text: str) -> str:
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True))


def drift(written: str, generated: str) -> list[str]:
    """What differs between prefect.yaml as ``written`` and as ``generated``, one phrase per deployment or field
    (``[]`` when the texts are equal)."""
    if written == generated:
        return []
    try:
        old = yaml.safe_load(written)
    except yaml.YAMLError as exc:
        return [f"prefect.yaml is not valid YAML ({' '.join(str(exc).split())})"]
    new = yaml.safe_load(generated)
    if not isinstance(old, dict):
        return ["prefect.yaml is not a mapping of settings and deployments"]
    problems = [f"{key}: {_short(old.get(key))} here, {_short(new.get(key))} generated"
                for key in new if key != "deployments" and old.get(key) != new.get(key)]  # fmt: skip
    before = {str(d.get("name")): d for d in old.get("deployments") or [] if isinstance(d, dict)}
    after = {str(d["name"]): d for d in new["deployments"]}
    for name, deployment in after.items():
        if name not in before:
            problems.append(f"deployment {name} is missing")
        elif before[name] != deployment:
            problems += [f"deployment {name}: {difference}" for difference in _differences(before[name], deployment)]
    problems += [f"deployment {name} has no campaign file any more" for name in before if name not in after]
    if not problems:
        problems.append("the same deployments, written differently (comments, order or layout)")
    return problems


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in dict.fromkeys([*new, *old])
                for d in _differences(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))]  # fmt: skip
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in _differences(a, b, f"{path}[{i}]")]
    if old == new:
        return []
    return [f"{path} is {_short(old)} here, {_short(new)} generated"]


def _short(value: Any) -> str:
    text = "absent" if value is None else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def scheduled_runs(catalog: Catalog, stages: Sequence[dict[str, Any]] = DEFAULT_STAGES) -> list[ScheduledRun]:
    """Every active schedule of every deployment (the daily run, each scheduled campaign, any stage whose schedule
    is switched on): what `omnicast worker` runs in-process, from the same source as prefect.yaml."""
    runs = []
    for deployment in deployments(catalog, stages):
        for schedule in deployment.get("schedules") or []:
            if not isinstance(schedule, dict) or not schedule.get("cron") or not schedule.get("active", True):
                continue
            runs.append(
                ScheduledRun(
                    deployment=str(deployment["name"]),
                    entrypoint=str(deployment["entrypoint"]),
                    parameters=dict(deployment.get("parameters") or {}),
                    cron=str(schedule["cron"]),
                    timezone=str(schedule.get("timezone") or "UTC"),
                )
            )
    return runs
