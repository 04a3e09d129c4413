"""The train flow: judge the candidate model against the serving one on the store's own data, register it, and fit
every customer's top picks with whichever configuration serves (``models/registry.py``).

Steps, all under the ``train`` lock (one run registers and replaces the picks at a time): ``evaluate-candidate``
(time split, both models fitted on its train part, NDCG@10 on the holdout), ``fit-and-recommend`` (all the data,
with the serving version's parameters unless the candidate was promoted), ``register-model`` (the version row;
the one it replaces retired). A candidate that is not promoted never reaches customers; the log and the artifact say
so, with counts and figures only.
"""

from __future__ import annotations

from datetime import datetime

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import Resources, locked, run_logger, run_resources, run_title
from models.recommend import TrainReport, train_and_recommend
from models.recommend.rules import load_rule_set
from models.registry import NOT_ENOUGH_DATA, Decision, evaluate_candidate, fit_arguments, register, summary
from models.schema import ModelVersion, utcnow


@task(name="evaluate-candidate", cache_policy=NO_CACHE)
def judge_candidate(resources: Resources, now: datetime, force: bool) -> Decision:
    return evaluate_candidate(resources.engine, now, force=force)


@task(name="fit-and-recommend", cache_policy=NO_CACHE)
def fit_and_recommend(resources: Resources, decision: Decision, now: datetime) -> TrainReport:
    arguments = fit_arguments(decision.serve_parameters)
    settings = resources.settings
    return train_and_recommend(
        resources.engine,
        k=settings.recommendations_per_customer,
        now=now,
        rules=load_rule_set(settings.campaigns_dir),
        store_tz=settings.timezone,
        **arguments,
    )


@task(name="register-model", cache_policy=NO_CACHE)
def register_model(resources: Resources, decision: Decision, now: datetime) -> ModelVersion:
    return register(resources.engine, decision, now)


def run_train(resources: Resources, force: bool = False) -> TrainReport:
    """The train stage on a run's resources: judge, fit, register; the report and the decision as an artifact and in
    the run's log. ``force`` promotes the candidate whatever the holdout says."""
    now = utcnow()
    with locked(resources.engine, resources.settings, "train"):
        decision = judge_candidate(resources, now, force)
        report = fit_and_recommend(resources, decision, now)
        version = register_model(resources, decision, now)
    logger = run_logger()
    logger.info(
        "train: %d customers scored (%d hybrid LightFM, %d popularity), %d items, %d interactions, "
        "%d recommendations stored; fit %.1f s, scoring %.1f s",
        report.customers, report.warm_customers, report.cold_customers, report.items, report.interactions,
        report.recommendations, report.fit_seconds, report.score_seconds,
    )  # fmt: skip
    line = decision_line(version, decision)
    if decision.promoted and NOT_ENOUGH_DATA not in decision.reason:
        logger.info(line)
    else:
        logger.warning(line)
    create_markdown_artifact(
        key="train-report",
        markdown=f"{line}\n\n```\n{report}\n```\n\n{evaluation_markdown(version)}",
        description="Recommender training and model registry",
    )
    return report


def decision_line(version: ModelVersion, decision: Decision) -> str:
    """One sentence: the new version, its status and reason, and which version's parameters made today's picks."""
    served = "its own" if decision.promoted else f"v{decision.serving_before}'s"
    return (
        f"model v{version.version}: {version.status}, {version.reason}; today's recommendations were fitted with "
        f"{served} parameters ({version.evaluation.get('seconds', 0):.1f} s of evaluation)"
    )


def evaluation_markdown(version: ModelVersion) -> str:
    """The holdout figures as a table (no customer data: counts and averages)."""
    row = summary(version)
    window = row["window"]
    lines = [
        f"data: {window['first_interaction_at'] or '–'} … {window['last_interaction_at'] or '–'}; "
        f"holdout: {window['holdout_start'] or 'none'} … {window['holdout_end'] or ''}",
        "",
    ]
    evaluation = version.evaluation
    if "candidate" not in evaluation:
        return "\n".join([*lines, f"not evaluated: {evaluation.get('not_evaluated', 'no holdout')}"])
    lines += ["| model | NDCG@10 re-buys credited | NDCG@10 re-buys excluded | customers |", "|---|---|---|---|"]
    judged = [(f"v{version.version} (candidate)", evaluation["candidate"])]
    serving = evaluation.get("serving")
    if serving and not serving.get("same_parameters"):
        judged.append((f"v{serving['version']} (serving, re-fitted on the same split)", serving))
    for name, figures in judged:
        lines.append(
            f"| {name} | {_cell(figures['include_seen']['ndcg_at_k'])} | {_cell(figures['exclude_seen']['ndcg_at_k'])}"
            f" | {figures['include_seen']['users']:,} |"
        )
    harness = evaluation.get("harness") or {}
    included, excluded = harness.get("include_seen", {}), harness.get("exclude_seen", {})
    for model in dict.fromkeys([*included, *excluded]):
        rebuys, others = included.get(model), excluded.get(model)
        if not isinstance(rebuys, dict) and not isinstance(others, dict):
            continue
        rebuys, others = rebuys if isinstance(rebuys, dict) else {}, others if isinstance(others, dict) else {}
        lines.append(
            f"| harness: {model} | {_cell(rebuys.get('ndcg_at_k'))} | {_cell(others.get('ndcg_at_k'))} "
            f"| {rebuys.get('users', others.get('users', 0)):,} |"
        )
    for protocol, why in ((p, h.get("not_evaluated")) for p, h in harness.items() if isinstance(h, dict)):
        if why:
            lines.append(f"\nharness, {protocol}: not evaluated ({why})")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _train_run_name() -> str:
    return run_title("train")


@flow(name="train", flow_run_name=_train_run_name)
def train_flow(force: bool = False) -> TrainReport:
    """Judge, register and fit (module docstring); ``force`` promotes the candidate without winning on the holdout."""
    with run_resources() as resources:
        return run_train(resources, force=force)
