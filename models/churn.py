"""Churn risk: how likely each customer is still buying, and win-back moments for those who lapsed.

Model: MBG/NBD (Batislam et al. 2007, the BG/NBD of Fader, Hardie & Lee with drop-out possible right after any
purchase, the first included). While active, a customer buys at a Poisson rate λ ~ Gamma(r, α); after each
purchase they drop out with probability p ~ Beta(a, b). The four population parameters are fitted by maximum
likelihood on (repeat purchases x, recency t_x, age T) in days, on up to 20,000 customers; with fewer than 50
customers or 20 repeat buyers we do not trust a fit and use a stated prior instead (r = 1, α = the median gap
between orders, a = 1, b = 4: one in five customers drops out after a purchase).

The fit searches over (log r, log α/r, log a, log b) with L-BFGS-B: α/r is the mean gap, so the ridge where r and α
grow together is one coordinate (over log r and log α the search stopped on it, far from the optimum).

Per customer:
- ``p_active`` = P(still active | x, t_x, T) = 1 / (1 + a/(b + x) · ((α + T)/(α + t_x))^(r + x));
- ``expected_gap_days`` = (α + t_x) / (r + x): the inverse of the posterior mean rate over the customer's active
  span (first to last order), i.e. their own rhythm shrunk towards the population's;
- :func:`expected_purchases` E[X(t) | x, t_x, T] over a horizon of t days, and :func:`p_buy` P(X(t) > 0 | x, t_x, T)
  = p_active × (1 − ((α + T)/(α + T + t))^(r + x)), both checked against a Monte Carlo of the process; spend, CLV
  and value at risk build on them in ``models/value.py``.

Win-back moments (:func:`find_churn_risks`): a repeat customer once the silence since their last order reaches
2 × their expected gap; a one-time buyer once it passes the store's :func:`second_purchase_day` (by which 80 % of
the second orders of customers who came back within a year had come); in both cases not yet a year (after that
they count as lost, not lapsing). One occurrence per lapse, keyed by the last order date, listed by value at risk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from models.interactions import ORDERS, counted_order, read_frame

KIND = "churn_risk"
LAPSE_FACTOR = 2.0
LOST_AFTER_DAYS = 365
SECOND_PURCHASE_QUANTILE = 0.8
MIN_CUSTOMERS_TO_FIT = 50
MIN_REPEATERS_TO_FIT = 20
FIT_SAMPLE = 20_000


@dataclass(frozen=True)
class ChurnParams:
    """MBG/NBD population parameters (time in days); ``fitted`` is False when they are the stated prior."""

    r: float
    alpha: float
    a: float
    b: float
    fitted: bool


def customer_summary(transactions: pd.DataFrame, as_of: date) -> pd.DataFrame:
    """Per customer from ``customer_id, date`` rows up to ``as_of``: ``orders`` (distinct days), ``first_order``,
    ``last_order``, ``frequency`` (repeat days x), ``recency_days`` (t_x) and ``age_days`` (T)."""
    days = pd.to_datetime(transactions["date"], utc=True).dt.tz_localize(None).dt.normalize()
    frame = pd.DataFrame({"customer_id": transactions["customer_id"].to_numpy(), "day": days.to_numpy()})
    frame = frame[frame["day"] <= pd.Timestamp(as_of)].drop_duplicates()
    summary = frame.groupby("customer_id").agg(
        orders=("day", "size"), first_order=("day", "min"), last_order=("day", "max")
    )
    summary["frequency"] = summary["orders"] - 1
    summary["recency_days"] = (summary["last_order"] - summary["first_order"]).dt.days
    summary["age_days"] = (pd.Timestamp(as_of) - summary["first_order"]).dt.days
    return summary.reset_index()


def fit_params(summary: pd.DataFrame, *, seed: int = 0) -> ChurnParams:
    """Maximum-likelihood MBG/NBD parameters, or the prior when the data are too few (see module docstring)."""
    prior = prior_params(summary)
    repeaters = int((summary["frequency"] > 0).sum())
    if len(summary) < MIN_CUSTOMERS_TO_FIT or repeaters < MIN_REPEATERS_TO_FIT:
        return prior
    sample = summary.sample(n=min(len(summary), FIT_SAMPLE), random_state=seed)
    x, t_x, age = (sample[c].to_numpy(dtype=float) for c in ("frequency", "recency_days", "age_days"))
    result = minimize(
        lambda v: -_log_likelihood(_from_search(v), x, t_x, age).mean(),
        _to_search(np.array([prior.r, prior.alpha, prior.a, prior.b])),
        method="L-BFGS-B",
        bounds=_SEARCH_BOUNDS,
        options={"ftol": 1e-12, "gtol": 1e-9, "maxiter": 2000},
    )
    if not np.isfinite(result.fun):
        return prior
    r, alpha, a, b = _from_search(result.x)
    return ChurnParams(float(r), float(alpha), float(a), float(b), fitted=True)


# The search runs over (log r, log α/r, log a, log b): α/r is the population's mean gap between purchases, so the
# ridge where r and α grow together (customers' rates more alike, same mean) is one coordinate instead of a diagonal.
# Over (log r, log α) L-BFGS-B stopped on that ridge far from the optimum (on the demo store 216 log-likelihood
# units short, r = 1.8 instead of 47, a and b pinned at the lower bound).
_SEARCH_BOUNDS = [(-8.0, 9.0), (-5.0, 10.0), (-8.0, 9.0), (-8.0, 9.0)]


def _to_search(params: np.ndarray) -> np.ndarray:
    r, alpha, a, b = params
    return np.array([np.log(r), np.log(alpha / r), np.log(a), np.log(b)])


def _from_search(v: np.ndarray) -> np.ndarray:
    return np.array([np.exp(v[0]), np.exp(v[0] + v[1]), np.exp(v[2]), np.exp(v[3])])


def prior_params(summary: pd.DataFrame) -> ChurnParams:
    """The stated prior: r = 1, α = median gap between orders of repeat buyers (60 days if none), a = 1, b = 4."""
    repeat = summary[summary["frequency"] > 0]
    gaps = repeat["recency_days"] / repeat["frequency"]
    alpha = float(gaps.median()) if len(gaps) and gaps.median() > 0 else 60.0
    return ChurnParams(r=1.0, alpha=alpha, a=1.0, b=4.0, fitted=False)


def churn_scores(transactions: pd.DataFrame, as_of: date, params: ChurnParams | None = None) -> pd.DataFrame:
    """Per customer: ``orders, first_order, last_order, days_since_last_order, expected_gap_days, p_active``.

    ``transactions`` has ``customer_id, date`` (a date or timestamp per order); later rows than ``as_of`` are
    ignored, so the same function scores a calibration period for evaluation.
    """
    summary = customer_summary(transactions, as_of)
    params = params or fit_params(summary)
    x, t_x, age = (summary[c].to_numpy(dtype=float) for c in ("frequency", "recency_days", "age_days"))
    summary["days_since_last_order"] = (pd.Timestamp(as_of) - summary["last_order"]).dt.days
    summary["expected_gap_days"] = (params.alpha + t_x) / (params.r + x)
    summary["p_active"] = p_active(params, x, t_x, age)
    return summary[
        ["customer_id", "orders", "first_order", "last_order", "days_since_last_order", "expected_gap_days", "p_active"]
    ]


def p_active(params: ChurnParams, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
    """MBG/NBD probability of still being active after x repeat purchases, the last at t_x, observed for T days."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_odds_dropped = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + age) - np.log(alpha + t_x))
    return expit(-log_odds_dropped)


def expected_purchases(params: ChurnParams, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, t: float) -> np.ndarray:
    """E[X(t) | x, t_x, T]: each customer's expected number of transactions in the next ``t`` days, given x repeat
    purchases, the last at t_x, observed for T = ``age`` days (Batislam, Denizel & Filiztekin 2007; the formula
    lifetimes' ``ModifiedBetaGeoFitter`` uses). It is ``p_active`` × :func:`expected_purchases_if_active`."""
    return np.asarray(expected_purchases_if_active(params, x, age, t) * p_active(params, x, t_x, age), dtype=float)


def expected_purchases_if_active(params: ChurnParams, x: np.ndarray, age: np.ndarray, t: float) -> np.ndarray:
    """E[X(t) | x, T, still active]: expected transactions in the next ``t`` days of a customer known to be active
    (rate λ ~ Gamma(r + x, α + T), drop-out p ~ Beta(a, b + x + 1) after x + 1 purchases survived). The closed form
    holds for any a ≠ 1 (for a < 1 both factors are negative); a = 1 exactly (the stated prior) is nudged off the
    pole."""
    x, age = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(age, dtype=float))
    if x.ndim == 1 and len(x) > 1000:  # hyp2f1 is slow (ms near z = 1): once per distinct (x, T), i.e. per day
        pairs, inverse = np.unique(np.column_stack([x, age]), axis=0, return_inverse=True)
        distinct = _if_active_closed_form(params, pairs[:, 0], pairs[:, 1], t)
        return np.asarray(distinct[np.ravel(inverse)], dtype=float)
    return _if_active_closed_form(params, x, age, t)


def _if_active_closed_form(params: ChurnParams, x: np.ndarray, age: np.ndarray, t: float) -> np.ndarray:
    r, alpha, b = params.r, params.alpha, params.b
    a = params.a if abs(params.a - 1.0) > 1e-6 else 1.0 + 1e-6
    hyp = hyp2f1(r + x, b + x + 1, a + b + x, t / (alpha + age + t))
    expected = (a + b + x) / (a - 1) * (1 - hyp * ((alpha + age) / (alpha + age + t)) ** (r + x))
    return np.asarray(np.where(np.isfinite(expected), np.maximum(expected, 0.0), 0.0), dtype=float)


def p_buy(params: ChurnParams, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, t: float) -> np.ndarray:
    """P(X(t) > 0 | x, t_x, T): the probability of at least one purchase in the next ``t`` days.

    Dead customers never buy and an active one cannot drop out before their next purchase, so the event is "active
    now and the next purchase comes within t". Given active, λ ~ Gamma(r + x, α + T) (the likelihood of being
    active factorises into λ's and p's parts), and P(no purchase in t | λ) = e^(-λt), whose mean over that Gamma is
    ((α + T)/(α + T + t))^(r + x). Hence p_active × (1 − ((α + T)/(α + T + t))^(r + x)); checked against a Monte Carlo
    of the process in tests/models/test_churn.py.
    """
    x, age = np.asarray(x, dtype=float), np.asarray(age, dtype=float)
    log_none = (params.r + x) * (np.log(params.alpha + age) - np.log(params.alpha + age + t))
    return np.asarray(p_active(params, x, t_x, age) * -np.expm1(log_none), dtype=float)


def lapsed_customers(
    scores: pd.DataFrame,
    *,
    factor: float = LAPSE_FACTOR,
    lost_after_days: int = LOST_AFTER_DAYS,
    one_time_after_days: float | None = None,
) -> pd.DataFrame:
    """Repeat customers silent for at least ``factor`` × their expected gap but fewer than ``lost_after_days``; with
    ``one_time_after_days``, also one-time buyers silent for at least that many days (and fewer than
    ``lost_after_days``)."""
    silence = scores["days_since_last_order"]
    lapsed = (scores["orders"] > 1) & (silence >= factor * scores["expected_gap_days"]) & (silence < lost_after_days)
    if one_time_after_days is not None:
        lapsed |= (scores["orders"] == 1) & (silence >= one_time_after_days) & (silence < lost_after_days)
    return scores[lapsed].reset_index(drop=True)


def second_purchase_day(
    transactions: pd.DataFrame, as_of: date, params: ChurnParams, *, quantile: float = SECOND_PURCHASE_QUANTILE
) -> tuple[float, str]:
    """The day after a first purchase by which most second purchases that happen have happened: the ``quantile``
    of the days from first to second purchase, over customers whose first purchase is at least a year before
    ``as_of`` and who bought again within that year (so a recent cohort's short gaps do not bias it). Returns the
    days and what they rest on: ``"cohort"`` (that, with ≥ 20 such customers), ``"all repeaters"`` (every second
    purchase so far, with ≥ 20), else ``"model"``: 2 × the population's mean gap α/r (the repeat rule's factor).
    """
    days = pd.to_datetime(transactions["date"], utc=True).dt.tz_localize(None).dt.normalize()
    frame = pd.DataFrame({"customer_id": transactions["customer_id"].to_numpy(), "day": days.to_numpy()})
    frame = frame[frame["day"] <= pd.Timestamp(as_of)].drop_duplicates().sort_values(["customer_id", "day"])
    nth = frame.groupby("customer_id").cumcount()
    first = frame[nth == 0].set_index("customer_id")["day"]
    second = frame[nth == 1].set_index("customer_id")["day"].reindex(first.index)
    gap = (second - first).dt.days
    settled = first <= pd.Timestamp(as_of) - pd.Timedelta(days=LOST_AFTER_DAYS)
    cohort = gap[settled & (gap <= LOST_AFTER_DAYS)].dropna()
    if len(cohort) >= MIN_REPEATERS_TO_FIT:
        return float(np.quantile(cohort, quantile)), "cohort"
    everyone = gap.dropna()
    if len(everyone) >= MIN_REPEATERS_TO_FIT:
        return float(np.quantile(everyone, quantile)), "all repeaters"
    return LAPSE_FACTOR * params.alpha / params.r, "model"


def load_orders(engine: Engine | Connection, store_tz: ZoneInfo, *, before: datetime | None = None) -> pd.DataFrame:
    """``customer_id, date, amount``: the store-local day and net amount (``total − refunded_amount``) of each
    counted order (cancelled, voided or fully refunded ones are not), placed before ``before`` if given."""
    stmt = select(
        ORDERS.c.customer_id, ORDERS.c.created_at, (ORDERS.c.total - ORDERS.c.refunded_amount).label("amount")
    ).where(ORDERS.c.customer_id.is_not(None), counted_order())
    if before is not None:
        stmt = stmt.where(ORDERS.c.created_at < before)
    orders = read_frame(engine, stmt, datetimes=["created_at"])
    local = orders["created_at"].dt.tz_convert(store_tz).dt.tz_localize(None).dt.normalize()
    amount = pd.to_numeric(orders["amount"], errors="coerce").fillna(0.0).clip(lower=0.0)
    return pd.DataFrame({"customer_id": orders["customer_id"], "date": local, "amount": amount})


def load_order_dates(engine: Engine, store_tz: ZoneInfo) -> pd.DataFrame:
    """``customer_id, date``: the store-local day of each counted order (cancelled or fully refunded ones are not)."""
    return load_orders(engine, store_tz)[["customer_id", "date"]]


EMPTY = pd.DataFrame(columns=["occurrence_key", "customer_id", "due_on", "payload"])


def find_churn_risks(engine: Engine, today: date, store_tz: ZoneInfo) -> pd.DataFrame:
    """Occurrences keyed ``churn_risk:{customer_id}:{last_order_date}``, due today, most value at risk first.

    Who: repeat customers silent for 2 × their expected gap, and one-time buyers silent past the store's
    :func:`second_purchase_day`, in both cases for less than a year. Payload: ``days_since_last_order`` and
    ``orders`` (ints; a template says "since your first order" when ``orders`` is 1), ``expected_gap_days``,
    ``p_active``, ``p_buy_90d`` (P(any purchase in the next 90 days)), ``expected_purchases_90d``,
    ``expected_spend`` (per purchase), ``clv_365d`` (expected value of the next 365 days, undiscounted),
    ``value_at_risk`` ((1 − p_active) × the 365 days' value if still active; ``models/value.py``) and
    ``value_rank`` (1 = the most value at risk among today's finds).
    """
    from models.value import customer_scores  # models.value builds on this module

    orders = load_orders(engine, store_tz)
    if orders.empty:
        return EMPTY.copy()
    scores = customer_scores(orders, today)
    params = ChurnParams(**scores.attrs["churn_params"])
    one_time_day, _ = second_purchase_day(orders, today, params)
    lapsed = lapsed_customers(scores, one_time_after_days=one_time_day)
    if lapsed.empty:
        return EMPTY.copy()
    lapsed = lapsed.sort_values(["value_at_risk", "customer_id"], ascending=[False, True], kind="stable")
    return pd.DataFrame(
        {
            "occurrence_key": [
                f"{KIND}:{c}:{d.date().isoformat()}"
                for c, d in zip(lapsed["customer_id"], lapsed["last_order"], strict=True)
            ],
            "customer_id": lapsed["customer_id"].astype(int).to_numpy(),
            "due_on": [today] * len(lapsed),
            "payload": [_payload(row, rank) for rank, row in enumerate(lapsed.itertuples(index=False), start=1)],
        }
    )


def _payload(row: Any, rank: int) -> dict[str, Any]:
    return {
        "days_since_last_order": int(row.days_since_last_order),
        "orders": int(row.orders),
        "expected_gap_days": round(float(row.expected_gap_days), 1),
        "p_active": round(float(row.p_active), 3),
        "p_buy_90d": round(float(row.p_buy_90d), 3),
        "expected_purchases_90d": round(float(row.expected_purchases_90d), 3),
        "expected_spend": round(float(row.expected_spend), 2),
        "clv_365d": round(float(row.clv_365d), 2),
        "value_at_risk": round(float(row.value_at_risk), 2),
        "value_rank": rank,
    }


def _log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
    """MBG/NBD log-likelihood per customer."""
    r, alpha, a, b = params
    base = (
        gammaln(r + x)
        - gammaln(r)
        + r * np.log(alpha)
        + betaln(a, b + x + 1)
        - betaln(a, b)
        - (r + x) * np.log(alpha + age)
    )
    dropped = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + age) - np.log(alpha + t_x))
    return base + np.logaddexp(0.0, dropped)
