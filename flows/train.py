"""The train flow: fit the hybrid recommender and store every customer's top picks with explanations."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import Resources, locked, run_logger, run_resources, run_title
from models.recommend import TrainReport, train_and_recommend


@task(name="fit-and-recommend", cache_policy=NO_CACHE)
def fit_and_recommend(resources: Resources) -> TrainReport:
    with locked(resources.engine, resources.settings, "train"):  # one run replaces the stored picks at a time
        return train_and_recommend(resources.engine, k=resources.settings.recommendations_per_customer)


def run_train(resources: Resources) -> TrainReport:
    """The train stage on a run's resources, with its report as an artifact and its counts in the run's log."""
    report = fit_and_recommend(resources)
    run_logger().info(
        "train: %d customers scored (%d hybrid LightFM, %d popularity), %d items, %d interactions, "
        "%d recommendations stored; fit %.1f s, scoring %.1f s",
        report.customers, report.warm_customers, report.cold_customers, report.items, report.interactions,
        report.recommendations, report.fit_seconds, report.score_seconds,
    )  # fmt: skip
    create_markdown_artifact(key="train-report", markdown=f"```\n{report}\n```", description="Recommender training")
    return report


def _train_run_name() -> str:
    return run_title("train")


@flow(name="train", flow_run_name=_train_run_name)
def train_flow() -> TrainReport:
    with run_resources() as resources:
        return run_train(resources)
