"""`omnicast evaluate recommendations`: production's hybrid against popularity on interactions with latent taste
clusters, the metrics by hand on a tiny example, what --include-seen credits, and bad files refused with file, row and
column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from models.errors import InputError
from models.evaluate_recommendations import (
    MODELS,
    PRODUCTION_COMPONENTS,
    evaluate_recommendations,
    ranking_metrics,
    read_features,
    read_interactions,
)

runner = CliRunner()
FIGURES = {"precision_at_k", "recall_at_k", "ndcg_at_k", "auc", "coverage", "fit_seconds"}


def clustered(users: int = 300, items: int = 100, clusters: int = 5, per_user: int = 12, seed: int = 11):
    """Each user draws items mostly from their own taste cluster (popularity skewed within it); the last three months
    of each user's interactions are the test. Item features carry the cluster and a price."""
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(items) % clusters
    user_cluster = rng.integers(0, clusters, users)
    popularity = rng.pareto(1.5, items) + 1
    rows = []
    for user in range(users):
        affinity = np.where(item_cluster == user_cluster[user], 8.0, 0.3) * popularity
        picks = rng.choice(items, size=per_user, replace=False, p=affinity / affinity.sum())
        for step, item in enumerate(picks):
            rows.append((f"u{user}", f"i{item}", pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=10 * step)))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame["weight"] = 1.0
    cut = frame["timestamp"] >= pd.Timestamp("2025-04-01", tz="UTC")
    features = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(items)], "family": [f"f{c}" for c in item_cluster],
         "price": rng.uniform(1, 50, items).round(2)}
    )  # fmt: skip
    return frame[~cut].reset_index(drop=True), frame[cut].reset_index(drop=True), features


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("recommendations")
    train, test, features = clustered()
    paths = {name: folder / f"{name}.csv" for name in ("train", "test", "items")}
    train.to_csv(paths["train"], index=False)
    test.to_csv(paths["test"], index=False)
    features.to_csv(paths["items"], index=False)
    return paths


def test_the_hybrid_and_default_lightfm_beat_popularity(files: dict[str, Path]) -> None:
    result = evaluate_recommendations(
        read_interactions(files["train"]), read_interactions(files["test"]),
        read_features(files["items"], "item_id", "--item-features"), k=10,
    )  # fmt: skip
    assert set(result) == set(MODELS)
    for name in MODELS:
        assert set(result[name]) >= FIGURES and result[name]["users"] == 300 and result[name]["k"] == 10
    hybrid, popularity, default = result["hybrid"], result["popularity"], result["lightfm_default"]
    assert hybrid["ndcg_at_k"] > 2 * popularity["ndcg_at_k"]
    assert default["ndcg_at_k"] > popularity["ndcg_at_k"]  # by a thin margin: logistic loss sees only positives
    assert hybrid["precision_at_k"] > popularity["precision_at_k"] and hybrid["auc"] > popularity["auc"] > 0.5
    assert hybrid["coverage"] > popularity["coverage"]
    assert result["rebuy"]["auc"] is None and hybrid["tuned"] is False
    settings = hybrid["settings"]
    assert settings["loss"] == "warp" and settings["components"] == 32 and settings["item_features"] is True
    assert settings["validated"] is True and settings["validation"] == "time"
    assert settings["item_identity_weight"] in (None, 0.8, 1.0) and len(settings["feature_trials"]) == 5
    assert result["lightfm_default"]["settings"] == {"loss": "logistic", "components": 10, "epochs": 30}


def test_the_metrics_by_hand() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5]])
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1, 0], [1, 0, 0, 0, 0]], dtype=np.float32))
    excluded = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    metrics = ranking_metrics(scores, relevant, excluded, k=2)
    # user 0: item 0 is excluded, the top two are items 1 (a hit) and 2; relevant are items 1 and 3
    np.testing.assert_array_equal(metrics["top"], [[1, 2], [4, 3]])
    np.testing.assert_allclose(metrics["precision"], [0.5, 0.0])
    np.testing.assert_allclose(metrics["recall"], [0.5, 0.0])
    np.testing.assert_allclose(metrics["ndcg"], [1 / (1 + 1 / np.log2(3)), 0.0])
    # user 0: pairs (1>2 yes, 1>4 yes, 3>2 no, 3>4 yes) = 3/4, item 0 not a negative; user 1: its item is last = 0
    np.testing.assert_allclose(metrics["auc"], [0.75, 0.0])
    # one relevant item at rank 2: DCG 1/log2(3), ideal 1; ties count half in the AUC
    tied = ranking_metrics(np.array([[1.0, 1.0, 0.0]]), sp.csr_matrix([[0.0, 1.0, 0.0]]),
                           sp.csr_matrix((1, 3)), k=3)  # fmt: skip
    np.testing.assert_allclose(tied["ndcg"], [1 / np.log2(3)])
    np.testing.assert_allclose(tied["auc"], [0.75])
    np.testing.assert_allclose(tied["precision"], [1 / 3])


def test_include_seen_changes_what_is_credited() -> None:
    # u1 bought a twice; its test re-buys a. u2 and u3 make a and b the popular items, c is bought once.
    train = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u2", "u3", "u3", "u4"],
                          "item_id": ["a", "a", "c", "a", "b", "a", "b", "c"], "weight": 1.0})  # fmt: skip
    test = pd.DataFrame({"user_id": ["u1", "u4"], "item_id": ["a", "b"], "weight": 1.0})
    default = evaluate_recommendations(train, test, k=1)
    # u1's only test item was seen in train: nothing creditable, so only u4 counts; its top 1 is a (most popular), not b
    assert default["popularity"]["users"] == 1 and default["popularity"]["precision_at_k"] == 0.0
    seen = evaluate_recommendations(train, test, k=1, include_seen=True)
    assert seen["popularity"]["users"] == 2
    # re-buy: u1's own top item is a (a hit), u4's own item is c (a miss); popularity: a for both
    assert seen["rebuy"]["precision_at_k"] == 0.5 and seen["rebuy"]["auc"] is None
    assert seen["popularity"]["precision_at_k"] == 0.5
    assert default["rebuy"]["precision_at_k"] == default["popularity"]["precision_at_k"]


def test_features_are_read_wide_with_multi_values_and_numeric_bins(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,notes,price\na,chocolate|cherry,1\nb,,2\nc,nutty,3\nd,nutty,4\ne,nutty,5\n")
    features = read_features(path, "item_id", "--item-features")
    by_item = features.groupby("item_id")["feature"].apply(set).to_dict()
    assert by_item["a"] == {"notes=chocolate", "notes=cherry", "price=q1"}
    assert by_item["b"] == {"price=q1"} and by_item["e"] == {"notes=nutty", "price=q4"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("user,item_id\nu1,a\n", "no 'user_id' column"),
        ("user_id,item_id,weight\nu1,a,1\nu2,b,heavy\n", "row 3, column weight"),
        ("user_id,item_id,timestamp\nu1,a,2025-01-01\nu2,b,soon\n", "row 3, column timestamp"),
        ("user_id,item_id\nu1,a\n,b\n", "row 3, column user_id: empty"),
        ("user_id,item_id\n", "no rows"),
    ],
)
def test_bad_interaction_files_are_refused_with_file_row_and_column(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "train.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message) as refused:
        read_interactions(path)
    assert str(path) in str(refused.value)


def test_bad_feature_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("sku,roast\na,dark\n")
    with pytest.raises(InputError, match="no 'item_id' column"):
        read_features(path, "item_id", "--item-features")
    path.write_text("item_id,roast\na,dark\n,light\n")
    with pytest.raises(InputError, match=r"items.csv, row 3, column item_id: empty"):
        read_features(path, "item_id", "--item-features")
    with pytest.raises(InputError, match="no such file"):
        read_features(tmp_path / "missing.csv", "item_id", "--item-features")


def test_the_command_prints_the_json_and_refuses_a_bad_file(files: dict[str, Path], tmp_path: Path) -> None:
    from flows.cli import app

    arguments = ["evaluate", "recommendations", "--train", str(files["train"]), "--test", str(files["test"]),
                 "--item-features", str(files["items"]), "--k", "5", "--include-seen", "--tune", "--tune-budget", "1",
                 "--json"]  # fmt: skip
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer) == set(MODELS)
    assert all(set(answer[name]) >= FIGURES for name in MODELS) and answer["hybrid"]["tuned"] is True
    tuning = answer["hybrid"]["tuning"]  # the production settings are always the first trial
    assert tuning["trials"] >= 1 and tuning["budget_seconds"] == 1 and tuning["best_validation_ndcg_at_10"] > 0
    assert answer["hybrid"]["k"] == 5 and answer["hybrid"]["include_seen"] is True

    table = runner.invoke(app, arguments[:-1])
    assert table.exit_code == 0 and "lightfm_default" in table.stdout

    bad = tmp_path / "test.csv"
    bad.write_text("user_id,item_id,weight\nu1,i1,-2\n")
    refused = runner.invoke(app, [*arguments[:4], "--test", str(bad), "--json"])
    assert refused.exit_code == 2 and f"{bad}, row 2, column weight" in refused.stderr


def test_tune_on_too_little_history_says_it_was_skipped_and_keeps_production_settings() -> None:
    train = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "c", "b"]})
    test = pd.DataFrame({"user_id": [1, 2, 3], "item_id": ["c", "b", "a"]})
    result = evaluate_recommendations(train, test, k=2, tune=True, tune_budget_seconds=5)
    hybrid = result["hybrid"]
    assert hybrid["tuned"] is False and "too little data" in hybrid["tuning"]["skipped"]
    assert hybrid["settings"]["validated"] is False and hybrid["settings"]["components"] == PRODUCTION_COMPONENTS
