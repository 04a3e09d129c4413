"""The train flow: fit the hybrid recommender and store every customer's top picks with explanations."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.runtime import Resources, locked, run_resources
from models.recommender import TrainReport, train_and_recommend


@task(name="fit-and-recommend", cache_policy=NO_CACHE)
def fit_and_recommend(resources: Resources) -> TrainReport:
    with locked(resources.engine, resources.settings, "train"):  # one run replaces the stored picks at a time
        return train_and_recommend(resources.engine, k=resources.settings.recommendations_per_customer)


def run_train(resources: Resources) -> TrainReport:
    """The train stage on a run's resources, with its report as an artifact."""
    report = fit_and_recommend(resources)
    create_markdown_artifact(key="train-report", markdown=f"```\n{report}\n```", description="Recommender training")
    return report


@flow(name="train")
def train_flow() -> TrainReport:
    with run_resources() as resources:
        return run_train(resources)
