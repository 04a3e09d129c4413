"""The validation split carved from train, feature weighting, and --tune's budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.interactions import Columns, IdMap, feature_matrix, features_from_wide
from models.recommend.hybrid import HybridLightFM
from models.recommend.tuning import tune_hybrid
from models.recommend.validation import holdout_split
from tests.models.builders import baskets, taste_clusters


def test_a_time_split_holds_out_the_last_fifth_of_the_history() -> None:
    interactions, _ = baskets(users=100)
    split = holdout_split(interactions)
    assert split is not None and split.by_time
    assert split.early[Columns.TIMESTAMP].max() <= split.late[Columns.TIMESTAMP].min()
    assert 0.15 <= len(split.late) / len(interactions) <= 0.25
    assert set(split.late[Columns.USER]) <= set(split.early[Columns.USER])  # only users with a past are judged
    assert split.horizon_days is not None and split.horizon_days > 1


def test_without_timestamps_a_share_of_each_users_rows_is_held_out() -> None:
    interactions, *_ = taste_clusters()
    split = holdout_split(interactions[[Columns.USER, Columns.ITEM]])
    assert split is not None and not split.by_time
    per_user = split.late.groupby(Columns.USER).size() / interactions.groupby(Columns.USER).size()
    assert per_user.dropna().max() <= 0.2 + 1e-9
    assert len(split.early) + len(split.late) <= len(interactions)


def test_too_little_history_is_not_split() -> None:
    tiny = pd.DataFrame({Columns.USER: [1, 1, 2], Columns.ITEM: ["a", "b", "a"]})
    assert holdout_split(tiny) is None
    model = HybridLightFM(num_threads=1, epochs=2).fit(tiny)
    assert model.settings()["validated"] is False  # production settings, said so


@settings(max_examples=30, deadline=None)
@given(weight=st.sampled_from([None, 0.5, 0.8]), n_features=st.integers(1, 5))
def test_feature_rows_sum_to_one_with_the_identity_keeping_its_share(weight: float | None, n_features: int) -> None:
    items = IdMap(["a", "b"])
    wide = pd.DataFrame({"item_id": ["a"], **{f"f{i}": [f"v{i}"] for i in range(n_features)}})
    matrix, names = feature_matrix(items, features_from_wide(wide, "item_id"), Columns.ITEM, weight)
    assert np.allclose(np.asarray(matrix.sum(axis=1)).ravel(), 1.0)
    expected = 1 / (1 + n_features) if weight is None else weight
    assert matrix[0, 0] == pytest.approx(expected)
    assert matrix[1, 1] == pytest.approx(1.0)  # an item without features keeps everything on its identity
    assert len(names) == 2 + n_features


def test_the_weighting_and_feature_weights_that_validate_best_are_chosen() -> None:
    interactions, features, *_ = taste_clusters()
    noise = features.assign(feature=[f"noise={i}" for i in np.random.default_rng(0).integers(0, 30, len(features))])
    model = HybridLightFM(num_threads=1).fit(interactions, noise)
    settings = model.settings()
    trials = settings["feature_trials"]
    assert len(trials) == 5  # three weightings, then the two other feature weights: a coordinate search, not a grid
    chosen = f"weighting={settings['weighting']},items={settings['item_identity_weight']},users=1.0"
    assert trials[chosen] == max(trials.values())


def test_tuning_tries_production_settings_first_and_keeps_to_its_budget() -> None:
    interactions, features, *_ = taste_clusters()
    quick = tune_hybrid(interactions, features, budget_seconds=0)
    assert quick is not None and len(quick.trials) == 1
    assert quick.best == HybridLightFM().hyperparameters()
    longer = tune_hybrid(interactions, features, budget_seconds=600, max_trials=3)
    assert longer is not None and len(longer.trials) == 3
    assert longer.best_score >= quick.best_score
    assert longer.summary()["trials"] == len(longer.trials)


def test_a_fit_that_would_overrun_its_budget_trains_fewer_epochs() -> None:
    interactions, _ = baskets(users=300)
    generous = HybridLightFM(num_threads=1).fit(interactions)
    assert "epochs_capped_by_budget" not in generous.settings()
    tight = HybridLightFM(num_threads=1, fit_budget_seconds=0.0).fit(interactions)
    chosen = tight.settings()
    assert chosen["epochs_capped_by_budget"] == 0.0
    assert chosen["epochs"] == 5 < chosen["epochs_validated"]  # never below MIN_EPOCHS
