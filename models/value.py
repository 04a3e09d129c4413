"""Customer value: what a customer spends per purchase (Gamma-Gamma) and over a horizon (CLV), and what is at risk.

**Spend per purchase.** The Gamma-Gamma model of Fader, Hardie & Lee (2005, "RFM and CLV: Using Iso-Value Curves for
Customer Base Analysis", with Colombo & Jiang 1999): a customer's purchase values are Gamma(p, ν) around their own
mean p/ν, and ν varies across customers as Gamma(q, γ); spend is independent of how often they buy. From a
customer's n purchases with mean z̄, the expected value of their next purchase is

    E[Z | n, z̄] = (q − 1)/(p n + q − 1) · p γ/(q − 1) + p n/(p n + q − 1) · z̄,

their own mean shrunk towards the population mean p γ/(q − 1) (finite for q > 1, which the fit enforces), the less
the more purchases they made. p, q, γ are fitted by maximum likelihood on the repeat customers (two purchases or
more, as FHL do), on up to 20,000 of them; with fewer than 20 we do not trust a fit and use the stated prior p = 4,
q = 4, γ = 3/4 × the mean purchase value (population mean = that mean; one purchase weighs 4/7 against it).
FHL's published fit on CDNOW's 2,357-customer sample (its 946 repeat customers' mean repeat-purchase value) is
p = 6.25, q = 3.74, γ = 15.44 (mean $35.08); we hold no copy of that dataset, so the tests check recovery of known
parameters on data simulated from the model instead.

A purchase is a day (the churn model's transaction: several orders of one customer on one day are one purchase), its
value the net amount of that day's counted orders (``total − refunded_amount``; cancelled, voided and fully refunded
orders do not count). Amounts are taken as they are: a store selling in several currencies must convert first.

**CLV over a horizon** (:func:`clv`): expected purchases in the horizon (MBG/NBD, ``models/churn.py``) × expected spend
per purchase, **undiscounted** by default; ``annual_discount`` (e.g. 0.10) discounts each month's expected purchases
to today. **Value at risk** (:func:`value_at_risk`) = (1 − P(active)) × CLV if active: the horizon's value the customer
would bring if they were still buying, times the probability they have stopped — equivalently CLV if active − CLV,
the value the store expects to lose unless it wins them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import gammaln

from models.churn import (
    ChurnParams,
    churn_scores,
    customer_summary,
    expected_purchases,
    expected_purchases_if_active,
    fit_params,
    p_active,
    p_buy,
)

FIT_SAMPLE = 20_000
MIN_REPEATERS_TO_FIT = 20
PRIOR_SHAPE = 4.0
STEP_DAYS = 30.0
SHORT_HORIZON_DAYS = 90.0
VALUE_HORIZON_DAYS = 365.0


@dataclass(frozen=True)
class SpendParams:
    """Gamma-Gamma population parameters; ``fitted`` is False when they are the stated prior."""

    p: float
    q: float
    gamma: float
    fitted: bool

    @property
    def mean(self) -> float:
        """The population's mean purchase value p γ / (q − 1)."""
        return self.p * self.gamma / (self.q - 1)


def customer_scores(
    transactions: pd.DataFrame,
    as_of: date,
    churn: ChurnParams | None = None,
    spend: SpendParams | None = None,
    *,
    annual_discount: float = 0.0,
) -> pd.DataFrame:
    """Every score of every customer as of ``as_of`` from ``customer_id, date[, amount]`` rows (later ones ignored):
    :func:`models.churn.churn_scores`' columns plus ``p_buy_90d``, ``expected_purchases_90d``, ``expected_spend`` (per
    purchase), ``clv_365d`` and ``value_at_risk`` (365 days; undiscounted unless ``annual_discount``). Without an
    ``amount`` column every purchase is worth 1 (CLV is then in purchases). The fitted parameters are in
    ``attrs["churn_params"]`` and ``attrs["spend_params"]``."""
    if "amount" not in transactions.columns:  # every purchase worth 1: the prior's mean, exactly, for everyone
        transactions = transactions.assign(amount=1.0)
        spend = spend or SpendParams(PRIOR_SHAPE, PRIOR_SHAPE, (PRIOR_SHAPE - 1) / PRIOR_SHAPE, fitted=False)
    summary = customer_summary(transactions, as_of)
    churn = churn or fit_params(summary)
    scores = churn_scores(transactions, as_of, churn)
    x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency_days", "age_days"))
    spent = spend_summary(transactions, as_of).set_index("customer_id").reindex(summary["customer_id"])
    purchases, mean_spend = spent["purchases"].to_numpy(dtype=float), spent["mean_spend"].to_numpy(dtype=float)
    spend = spend or fit_spend(purchases, mean_spend)
    per_purchase = expected_spend(spend, purchases, mean_spend)
    alive = scores["p_active"].to_numpy(dtype=float)
    if_active = clv(churn, per_purchase, x, t_x, age, VALUE_HORIZON_DAYS, annual_discount=annual_discount,
                    if_active=True)  # fmt: skip
    scores["p_buy_90d"] = p_buy(churn, x, t_x, age, SHORT_HORIZON_DAYS)
    scores["expected_purchases_90d"] = expected_purchases(churn, x, t_x, age, SHORT_HORIZON_DAYS)
    scores["expected_spend"] = per_purchase
    scores["clv_365d"] = alive * if_active  # E[X(t)] = P(active) × E[X(t) | active], step by step too
    scores["value_at_risk"] = (1.0 - alive) * if_active
    scores.attrs["churn_params"] = {"r": churn.r, "alpha": churn.alpha, "a": churn.a, "b": churn.b,
                                    "fitted": churn.fitted}  # fmt: skip
    scores.attrs["spend_params"] = {"p": spend.p, "q": spend.q, "gamma": spend.gamma, "fitted": spend.fitted}
    return scores


def spend_summary(transactions: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Per customer from ``customer_id, date, amount`` rows up to ``as_of``: ``purchases`` (distinct days) and
    ``mean_spend`` (the mean of each day's summed amount). Rows without an amount count as 0."""
    days = pd.to_datetime(transactions["date"], utc=True).dt.tz_localize(None).dt.normalize()
    amount = pd.to_numeric(transactions["amount"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    frame = pd.DataFrame(
        {"customer_id": transactions["customer_id"].to_numpy(), "day": days.to_numpy(), "amount": amount}
    )
    frame = frame[frame["day"] <= pd.Timestamp(as_of)]
    per_day = frame.groupby(["customer_id", "day"], as_index=False)["amount"].sum()
    summary = per_day.groupby("customer_id").agg(purchases=("day", "size"), mean_spend=("amount", "mean"))
    return summary.reset_index()


def fit_spend(purchases: np.ndarray, mean_spend: np.ndarray, *, seed: int = 0) -> SpendParams:
    """Maximum-likelihood Gamma-Gamma parameters from the repeat customers (``purchases`` ≥ 2 with a positive mean),
    or the stated prior when fewer than 20 (see the module docstring)."""
    n, z = np.asarray(purchases, dtype=float), np.asarray(mean_spend, dtype=float)
    prior = prior_spend(n, z)
    usable = (n >= 2) & (z > 0) & np.isfinite(z)
    if int(usable.sum()) < MIN_REPEATERS_TO_FIT:
        return prior
    n, z = n[usable], z[usable]
    if len(n) > FIT_SAMPLE:
        chosen = np.random.default_rng(seed).choice(len(n), FIT_SAMPLE, replace=False)
        n, z = n[chosen], z[chosen]
    scale = float(np.median(z))  # fit in units of the median spend: the same search for cents, dollars or yen
    start = _to_search(np.array([prior.p, prior.q, prior.gamma / scale]))
    result = minimize(
        lambda v: -_spend_log_likelihood(_from_search(v), n, z / scale).mean(),
        start,
        method="L-BFGS-B",
        bounds=[(-6.0, 8.0), (-8.0, 8.0), (-10.0, 10.0)],
        options={"ftol": 1e-12, "gtol": 1e-9, "maxiter": 2000},
    )
    if not np.isfinite(result.fun):
        return prior
    p, q, gamma = _from_search(result.x)
    return SpendParams(float(p), float(q), float(gamma * scale), fitted=True)


def prior_spend(purchases: np.ndarray, mean_spend: np.ndarray) -> SpendParams:
    """The stated prior: p = q = 4 and γ such that the population mean is the customers' mean purchase value
    (weighted by purchases; 1 if there is none)."""
    n, z = np.asarray(purchases, dtype=float), np.asarray(mean_spend, dtype=float)
    total = float(n.sum())
    mean = float((n * z).sum() / total) if total > 0 and (n * z).sum() > 0 else 1.0
    return SpendParams(PRIOR_SHAPE, PRIOR_SHAPE, mean * (PRIOR_SHAPE - 1) / PRIOR_SHAPE, fitted=False)


def expected_spend(params: SpendParams, purchases: np.ndarray, mean_spend: np.ndarray) -> np.ndarray:
    """E[value of the next purchase | n purchases averaging z̄] (the module docstring's formula); the population
    mean for someone with no purchase."""
    n = np.asarray(purchases, dtype=float)
    z = np.where(n > 0, np.nan_to_num(np.asarray(mean_spend, dtype=float)), 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    return np.asarray(p * (gamma + n * np.maximum(z, 0.0)) / (p * n + q - 1), dtype=float)


def clv(
    churn: ChurnParams,
    spend: np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    age: np.ndarray,
    horizon: float,
    *,
    annual_discount: float = 0.0,
    if_active: bool = False,
) -> np.ndarray:
    """Expected value of each customer's purchases in the next ``horizon`` days: expected purchases × ``spend`` (the
    expected value per purchase, :func:`expected_spend`). Undiscounted unless ``annual_discount`` > 0: then the
    horizon is cut in 30-day steps and each step's expected purchases are discounted from its end. ``if_active``:
    the same for a customer known to be still active (E[X(t) | active])."""
    x, t_x, age = (np.asarray(v, dtype=float) for v in (x, t_x, age))
    if horizon <= 0:
        return np.zeros(len(x))
    if annual_discount <= 0:
        return np.asarray(_purchases(churn, x, t_x, age, horizon, if_active) * spend, dtype=float)
    ends = np.append(np.arange(STEP_DAYS, horizon, STEP_DAYS), horizon)
    total, before = np.zeros(len(x)), np.zeros(len(x))
    for end in ends:
        upto = _purchases(churn, x, t_x, age, float(end), if_active)
        total += (upto - before) / (1.0 + annual_discount) ** (end / 365.0)
        before = upto
    return np.asarray(total * spend, dtype=float)


def value_at_risk(
    churn: ChurnParams,
    spend: np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    age: np.ndarray,
    horizon: float,
    *,
    annual_discount: float = 0.0,
) -> np.ndarray:
    """(1 − P(active)) × CLV if active over ``horizon``: the value the store expects to lose unless the customer is
    won back (module docstring)."""
    alive = p_active(churn, np.asarray(x, dtype=float), np.asarray(t_x, dtype=float), np.asarray(age, dtype=float))
    if_active = clv(churn, spend, x, t_x, age, horizon, annual_discount=annual_discount, if_active=True)
    return np.asarray((1.0 - alive) * if_active, dtype=float)


def _purchases(
    churn: ChurnParams, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, t: float, if_active: bool
) -> np.ndarray:
    if if_active:
        return expected_purchases_if_active(churn, x, age, t)
    return expected_purchases(churn, x, t_x, age, t)


def _spend_log_likelihood(params: np.ndarray, n: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Gamma-Gamma log-likelihood of each customer's mean value z̄ over n purchases (FHL 2005, eq. 2)."""
    p, q, gamma = params
    return (
        gammaln(p * n + q)
        - gammaln(p * n)
        - gammaln(q)
        + q * np.log(gamma)
        + (p * n - 1) * np.log(z)
        + p * n * np.log(n)
        - (p * n + q) * np.log(gamma + n * z)
    )


def _to_search(params: np.ndarray) -> np.ndarray:
    p, q, gamma = params
    return np.array([np.log(p), np.log(q - 1), np.log(gamma)])


def _from_search(v: np.ndarray) -> np.ndarray:
    return np.array([np.exp(v[0]), 1.0 + np.exp(v[1]), np.exp(v[2])])


__all__ = [
    "SpendParams",
    "clv",
    "customer_scores",
    "expected_spend",
    "fit_spend",
    "prior_spend",
    "spend_summary",
    "value_at_risk",
]
