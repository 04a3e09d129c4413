"""``--tune``: the hybrid's hyperparameters chosen on a validation split carved from train, within a time budget.

Random search (seeded, so a run can be repeated) over LightFM's loss, components, learning rate, regularisation and
WARP's ``max_sampled``, the production settings tried first so tuning can only keep or beat them on the split. Each
trial runs the hybrid's whole validation (feature weights, then epochs by early stopping) on the split's early part
and is judged by NDCG@10 on new items of its late part (:mod:`models.recommend.validation`). Trials start while the
budget lasts; a trial that starts runs to its end, so a run can overshoot the budget by one trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.recommend.base import prepared_interactions
from models.recommend.hybrid import HybridLightFM
from models.recommend.validation import Judge, holdout_split

DEFAULT_BUDGET_SECONDS = 120.0
SPACE: dict[str, tuple[Any, ...]] = {
    "loss": ("warp", "warp", "warp", "bpr"),  # WARP three times out of four: it wins on top-k far more often
    "components": (16, 32, 48, 64, 96),
    "learning_rate": (0.01, 0.02, 0.03, 0.05, 0.08),
    "item_alpha": (0.0, 1e-7, 1e-6, 1e-5, 1e-4),
    "max_sampled": (10, 20, 40),
}


@dataclass
class TuningResult:
    """The winning settings, what every trial scored, and how long it took."""

    best: dict[str, Any]
    best_score: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    budget_seconds: float = DEFAULT_BUDGET_SECONDS

    def summary(self) -> dict[str, Any]:
        return {
            "budget_seconds": self.budget_seconds,
            "seconds": round(self.seconds, 1),
            "trials": len(self.trials),
            "best": self.best,
            "best_validation_ndcg_at_10": round(self.best_score, 4),
        }


def tune_hybrid(
    interactions: pd.DataFrame,
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
    *,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    seed: int = 0,
    base: dict[str, Any] | None = None,
    max_trials: int = 200,
) -> TuningResult | None:
    """Search hyperparameters for :class:`HybridLightFM` on a split of ``interactions``; None when the data is
    too small to split (then the production settings stand)."""
    started = time.perf_counter()
    base = dict(base or {})
    interactions = prepared_interactions(interactions).reset_index(drop=True)
    split = holdout_split(interactions, seed=seed)
    if split is None:
        return None
    rng = np.random.default_rng(seed)
    drawn = [{key: values[rng.integers(len(values))] for key, values in SPACE.items()} for _ in range(max_trials - 1)]
    candidates: list[dict[str, Any]] = [{}, *drawn]
    result: TuningResult | None = None
    for overrides in candidates:
        if result is not None and time.perf_counter() - started >= budget_seconds:
            break
        settings = {**base, **overrides}
        if "item_alpha" in overrides:
            settings["user_alpha"] = overrides["item_alpha"]
        model = HybridLightFM(**settings, seed=seed, num_threads=1, blend_rebuys=False)  # one thread: one answer
        score = _validation_score(model, split, interactions, item_features, user_features)
        if score is None:
            return None
        trial = {**model.hyperparameters(), "epochs_chosen": model.choices_.get("epochs"),
                 "validation_ndcg_at_10": round(score, 4)}  # fmt: skip
        if result is None:
            result = TuningResult(best=model.hyperparameters(), best_score=score, budget_seconds=budget_seconds)
        elif score > result.best_score:
            result.best, result.best_score = model.hyperparameters(), score
        result.trials.append(trial)
    assert result is not None
    result.seconds = time.perf_counter() - started
    return result


def _validation_score(
    model: HybridLightFM,
    split: Any,
    interactions: pd.DataFrame,
    item_features: pd.DataFrame | None,
    user_features: pd.DataFrame | None,
) -> float | None:
    """Run the model's own validation (feature weights, epochs) on ``split``; its best NDCG@10 there."""
    model.prepare_ids(interactions, item_features)
    judge = Judge.of(split, model.users_, model.items_, model.seed)
    if judge is None:
        return None
    model._validate(split, judge, item_features, user_features)
    return float(model.choices_["validation_ndcg_at_10"])
