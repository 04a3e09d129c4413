"""`omnicast evaluate churn`: the repeat-purchase model against the naive baseline on a history simulated from a known
MBG/NBD process, the closed form against a Monte Carlo of that process, and bad files refused with file and column."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.churn import ChurnParams
from models.evaluate import auc, evaluate_churn, expected_purchases

START = date(2024, 1, 1)
CALIBRATION_END = date(2025, 6, 30)
HOLDOUT_END = date(2025, 12, 31)
runner = CliRunner()


def simulated_history(customers: int = 3_000, seed: int = 7) -> pd.DataFrame:
    """Customers arriving over the first half year, each buying at a Poisson rate λ ~ Gamma(r, α) until they drop out
    (probability p ~ Beta(a, b) right after each purchase, the first included): the MBG/NBD process."""
    rng = np.random.default_rng(seed)
    rows = []
    end = (HOLDOUT_END - START).days
    for customer in range(customers):
        rate = rng.gamma(0.8, 1 / 40.0)  # r = 0.8, alpha = 40 days
        drop = rng.beta(1.5, 6.0)
        day = float(rng.integers(0, 180))
        while day <= end:
            rows.append((f"c{customer}", START + timedelta(days=int(day)), round(float(rng.gamma(2, 15)), 2)))
            if rng.random() < drop:
                break
            day += rng.exponential(1 / rate)
    return pd.DataFrame(rows, columns=["customer_id", "date", "amount"])


def test_the_model_beats_the_naive_baseline_on_every_figure() -> None:
    result = evaluate_churn(simulated_history(), CALIBRATION_END, HOLDOUT_END).as_json()
    model, naive = result["model"], result["naive"]
    assert model["customers"] == naive["customers"] == 3_000
    assert model["holdout_actual"] == naive["holdout_actual"] > 0
    assert abs(model["relative_error"]) < abs(naive["relative_error"])
    assert model["mae"] < naive["mae"] and model["rmse"] < naive["rmse"]
    assert model["correlation"] > naive["correlation"] and model["auc"] > naive["auc"]
    assert model["fitted"] and set(model["params"]) == {"r", "alpha", "a", "b"} and model["log_likelihood"] < 0
    assert abs(model["params"]["r"] - 0.8) < 0.25 and abs(model["params"]["alpha"] - 40) < 15  # it finds the process


def bgnbd_history(customers: int = 2_357, seed: int = 0) -> pd.DataFrame:
    """CDNOW-like history from BG/NBD with the parameters Fader, Hardie & Lee (2005) fitted to CDNOW's 2,357-customer
    sample (r = 0.243, α = 4.414 weeks, a = 0.793, b = 2.426): first purchases spread over the first 12 weeks, then
    Poisson purchases with drop-out possible after each repeat purchase, over 78 weeks."""
    rng = np.random.default_rng(seed)
    rates, drops = rng.gamma(0.243, 1 / (4.414 * 7), customers), rng.beta(0.793, 2.426, customers)
    first, end = rng.uniform(0, 12 * 7, customers), 78 * 7
    rows = []
    for customer in range(customers):
        clock = first[customer]
        rows.append((f"c{customer}", clock))
        while (clock := clock + rng.exponential(1 / rates[customer])) < end:
            rows.append((f"c{customer}", clock))
            if rng.random() < drops[customer]:
                break
    frame = pd.DataFrame(rows, columns=["customer_id", "day"])
    frame["date"] = pd.Timestamp("1997-01-01") + pd.to_timedelta(np.floor(frame["day"]), unit="D")
    return frame[["customer_id", "date"]]


@pytest.mark.parametrize("seed", [0, 1])
def test_on_cdnow_like_data_the_model_beats_the_naive_baseline_on_every_figure(seed: int) -> None:
    """39 weeks of calibration, 39 of holdout, as in the BG/NBD paper: the model wins on every figure of the
    contract, ranking by expected purchases; its P(buy) is reported beside it."""
    result = evaluate_churn(bgnbd_history(seed=seed), date(1997, 10, 1), date(1998, 7, 1)).as_json()
    model, naive = result["model"], result["naive"]
    assert model["customers"] == naive["customers"] == 2_357
    assert abs(model["relative_error"]) < 0.15 < abs(naive["relative_error"])
    assert model["mae"] < naive["mae"] and model["rmse"] < naive["rmse"]
    assert model["correlation"] > naive["correlation"] and model["auc"] > naive["auc"]
    assert model["auc_score"] == "expected_purchases" and model["auc"] == model["auc_expected_purchases"]
    assert 0.5 < model["auc_p_buy"] < 1


@pytest.mark.parametrize("params", [(0.525, 43.3, 0.891, 1.614), (1.2, 30.0, 2.5, 4.0)])
def test_expected_purchases_match_a_monte_carlo_of_the_process(params: tuple[float, float, float, float]) -> None:
    r, alpha, a, b = params  # a < 1 (CDNOW's published fit, in days) and a > 1
    rng = np.random.default_rng(3)
    n, horizon = 100_000, 180.0
    rate, drop = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    count, clock = np.zeros(n), np.zeros(n)
    active = rng.random(n) > drop  # a new customer may drop out right after the first purchase
    while active.any():
        clock = np.where(active, clock + rng.exponential(1 / rate), clock)
        bought = active & (clock <= horizon)
        count += bought
        active = bought & (rng.random(n) > drop)
    zero = np.zeros(1)
    formula = expected_purchases(ChurnParams(r, alpha, a, b, True), zero, zero, zero, horizon)[0]
    assert formula == pytest.approx(count.mean(), rel=0.02)


def test_auc_counts_ties_as_half_and_needs_both_classes() -> None:
    assert auc(np.array([True, False]), np.array([1.0, 0.0])) == 1.0
    assert auc(np.array([True, False]), np.array([1.0, 1.0])) == 0.5
    assert auc(np.array([True, True]), np.array([1.0, 0.0])) is None


def test_the_command_prints_the_json_and_refuses_a_bad_file(tmp_path: Path) -> None:
    from flows.cli import app

    history = tmp_path / "transactions.csv"
    simulated_history(400).to_csv(history, index=False)
    arguments = ["evaluate", "churn", "--transactions", str(history), "--calibration-end", str(CALIBRATION_END),
                 "--holdout-end", str(HOLDOUT_END), "--json"]  # fmt: skip
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    for name in ("model", "naive"):
        assert {"customers", "holdout_actual", "holdout_predicted", "relative_error", "mae", "rmse", "correlation",
                "auc"} <= set(answer[name])  # fmt: skip
    assert {"params", "log_likelihood"} <= set(answer["model"])

    history.write_text("customer,day\nc1,2025-01-01\n")
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == 2 and "no 'customer_id' column" in refused.stderr
    history.write_text("customer_id,date\nc1,2025-01-01\nc2,yesterday\n")
    refused = runner.invoke(app, arguments)
    assert refused.exit_code == 2 and "row 3, column date: not a date" in refused.stderr
