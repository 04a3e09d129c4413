"""The train flow: fit the hybrid recommender and store every customer's top picks with explanations."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy.engine import Engine

from flows.runtime import load_settings, locked, open_database
from flows.settings import Settings
from models.recommender import TrainReport, train_and_recommend


@task(name="fit-and-recommend", cache_policy=NO_CACHE)
def fit_and_recommend(engine: Engine, settings: Settings) -> TrainReport:
    with locked(engine, settings, "train"):  # one run replaces the stored picks at a time
        return train_and_recommend(engine, k=settings.recommendations_per_customer)


@flow(name="train")
def train_flow() -> TrainReport:
    settings = load_settings()
    engine = open_database(settings)
    report = fit_and_recommend(engine, settings)
    create_markdown_artifact(key="train-report", markdown=f"```\n{report}\n```", description="Recommender training")
    return report
