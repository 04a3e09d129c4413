"""Offline evaluation on a store's own history (or any file of transactions): how well the models predict what people
did next, against a naive baseline measured the same way.

**Churn and repeat purchases** (:func:`evaluate_churn`). Transactions (``customer_id, date[, amount]``; several rows
of one customer on one day are one transaction) are split at a calibration end. The cohort is everyone whose first
purchase is on or before it. On the calibration period the MBG/NBD model of ``models/churn.py`` is fitted (all of the
cohort, up to its fitting sample) and predicts each customer's number of transactions in the holdout
(calibration end, holdout end]: the conditional expectation E[X(t) | x, t_x, T] (Batislam, Denizel & Filiztekin 2007;
the formula lifetimes' ``ModifiedBetaGeoFitter`` uses). The naive baseline extrapolates each customer's own repeat
rate: x / T × t (0 for someone who has not bought again). Both are scored per customer against what happened:

* ``holdout_actual`` / ``holdout_predicted``: transactions in the holdout, summed over the cohort, and their
  ``relative_error`` (predicted − actual) / actual;
* ``mae``, ``rmse``: per-customer errors; ``correlation``: Pearson, per customer;
* ``auc``: how well a score ranks "buys at least once in the holdout" above "does not" (Mann-Whitney, ties
  counted half). The model ranks by its expected number of purchases in the holdout: on the real CDNOW master file
  (23,570 customers, calibration to 1997-09-30, holdout to 1998-06-30) it ranks buyers better (0.765) than the
  probability of buying at least once (``models.churn.p_buy``, 0.754, reported as ``auc_p_buy``), though on data
  simulated exactly from BG/NBD the probability is slightly ahead (0.734 against 0.727, seed 0 of
  tests/models/test_evaluate.py): real buyers are burstier than the model, and frequency carries that. The naive
  baseline ranks by its prediction.

The model's entry adds its ``params`` (r, alpha, a, b; time in days), whether they were ``fitted`` (too little data
falls back to the stated prior), the calibration ``log_likelihood`` (summed over the cohort), ``auc_score`` (which
score its ``auc`` ranks by), ``auc_p_buy`` and ``auc_expected_purchases`` (the same as ``auc``). ``relative_error``
is signed; compare models by its absolute value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from models.churn import _log_likelihood, customer_summary, expected_purchases, fit_params, p_buy
from models.errors import InputError


@dataclass(frozen=True)
class ChurnEvaluation:
    """The evaluation of one split: per model, the figures of the module docstring."""

    model: dict[str, Any]
    naive: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model, "naive": self.naive}


def read_transactions(path: Path) -> pd.DataFrame:
    """``customer_id, date[, amount]`` from a CSV with a header; an unreadable file or a missing or bad column stops
    with an :class:`InputError` naming the file, the column and the fix."""
    try:
        frame = pd.read_csv(path, dtype={"customer_id": str}, low_memory=False)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; give --transactions a CSV of customer_id,date[,amount]") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({type(exc).__name__}); give customer_id,date[,amount]") from None
    missing = [column for column in ("customer_id", "date") if column not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: no {missing[0]!r} column (columns: {', '.join(map(str, frame.columns)) or 'none'}); the header "
            "must name customer_id and date (amount is optional)"
        )
    dates = pd.to_datetime(frame["date"], errors="coerce", format="mixed")
    bad = int(dates.isna().sum())
    if bad:
        row = int(np.flatnonzero(dates.isna().to_numpy())[0]) + 2  # 1-based, after the header
        raise InputError(f"{path}, row {row}, column date: not a date ({bad:,} such rows); use YYYY-MM-DD")
    ids = frame["customer_id"].astype(str).str.strip()
    if (ids == "").any() or frame["customer_id"].isna().any():
        row = int(np.flatnonzero(((ids == "") | frame["customer_id"].isna()).to_numpy())[0]) + 2
        raise InputError(f"{path}, row {row}, column customer_id: empty; every row needs the customer's id")
    return pd.DataFrame({"customer_id": ids.to_numpy(), "date": dates.dt.tz_localize(None).dt.normalize().to_numpy()})


def evaluate_churn(transactions: pd.DataFrame, calibration_end: date, holdout_end: date) -> ChurnEvaluation:
    """The MBG/NBD model and the naive baseline on one calibration / holdout split (see the module docstring)."""
    if holdout_end <= calibration_end:
        raise InputError(f"--holdout-end {holdout_end} must be after --calibration-end {calibration_end}")
    summary = customer_summary(transactions, calibration_end)
    if summary.empty:
        raise InputError(f"nobody bought on or before the calibration end {calibration_end}: choose a later date")
    horizon = float((pd.Timestamp(holdout_end) - pd.Timestamp(calibration_end)).days)
    actual = _holdout_counts(transactions, summary["customer_id"], calibration_end, holdout_end)
    x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency_days", "age_days"))
    params = fit_params(summary)
    predicted = expected_purchases(params, x, t_x, age, horizon)
    buys = p_buy(params, x, t_x, age, horizon)
    naive = np.where(age > 0, x / np.maximum(age, 1.0), 0.0) * horizon
    log_likelihood = float(_log_likelihood(np.array([params.r, params.alpha, params.a, params.b]), x, t_x, age).sum())
    model = {
        **scores(actual, predicted),
        "auc_score": "expected_purchases",
        "auc_expected_purchases": auc(actual > 0, predicted),
        "auc_p_buy": auc(actual > 0, buys),
        "params": {"r": params.r, "alpha": params.alpha, "a": params.a, "b": params.b},
        "fitted": params.fitted,
        "log_likelihood": log_likelihood,
    }
    return ChurnEvaluation(model=model, naive=scores(actual, naive))


def scores(actual: np.ndarray, predicted: np.ndarray, rank_by: np.ndarray | None = None) -> dict[str, Any]:
    """The per-customer figures of one prediction against what happened; ``auc`` ranks by ``rank_by`` when given
    (the model's P(buy in the holdout)), else by the prediction."""
    total_actual, total_predicted = float(actual.sum()), float(predicted.sum())
    errors = predicted - actual
    correlation = float(np.corrcoef(actual, predicted)[0, 1]) if actual.std() > 0 and predicted.std() > 0 else None
    return {
        "customers": int(len(actual)),
        "holdout_actual": total_actual,
        "holdout_predicted": total_predicted,
        "relative_error": (total_predicted - total_actual) / total_actual if total_actual else None,
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "correlation": correlation,
        "auc": auc(actual > 0, predicted if rank_by is None else rank_by),
    }


def auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve of ``score`` for ``positive`` (Mann-Whitney U, ties half); ``None`` if one class is
    empty."""
    positives = int(positive.sum())
    negatives = len(positive) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _holdout_counts(transactions: pd.DataFrame, customers: pd.Series, start: date, end: date) -> np.ndarray:
    """Per customer of ``customers`` (in order): distinct transaction days in (start, end]."""
    days = pd.to_datetime(transactions["date"]).dt.normalize()
    inside = (days > pd.Timestamp(start)) & (days <= pd.Timestamp(end))
    held = pd.DataFrame({"customer_id": transactions["customer_id"].to_numpy()[inside.to_numpy()],
                         "day": days[inside].to_numpy()}).drop_duplicates()  # fmt: skip
    counts = held.groupby("customer_id").size()
    return np.asarray(customers.map(counts).fillna(0).to_numpy(dtype=float))


__all__ = ["ChurnEvaluation", "auc", "evaluate_churn", "expected_purchases", "read_transactions", "scores"]
