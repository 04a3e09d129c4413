"""The model registry (``model_versions``): every trained recommender with its version, data window, parameters and
evaluation on the store's own data, and the rule that decides which one serves.

**What a version is, and why no fitted model file is kept.** The day's picks are re-fitted on all of the store's data
at every run: a fitted model is stale by the next run (new customers are cold to it, new orders unseen), so serving
yesterday's fitted model is never what a store wants, even to roll back. What a store rolls back to is a
*configuration*: the model kind and hyperparameters (``parameters``), run by the omnicast release that trained it
(``code_version``). A version's artifact is therefore its parameters plus its data window (first and last signal the
fit read, holdout start and end): with the seed it holds, the holdout fit is reproducible from the database for as
long as those rows are there (the production fit uses two threads, so it is reproducible up to LightFM's thread
races). A pickle would also tie the row to the code that wrote it (unpickling runs whatever classes the installed
release has), grows with customers × components every day, needs a retention policy, and has no "folder next to the
database" when the database is PostgreSQL on another host; everything the registry needs lives in one table.

**Rolling back.** ``promote_by_hand`` (``omnicast models promote VERSION``) makes a version serve again and *pins*
it: the next train runs fit the day's picks with its parameters and record their candidates without promoting them,
until another version is promoted by hand or a run is forced (``omnicast train --force``). Parameters this release
no longer understands (another model kind, a hyperparameter it no longer takes) cannot serve: promotion by hand
refuses them, and a train run promotes its candidate instead, saying why.

**The time split** (:func:`time_split`): the holdout is the last :data:`HOLDOUT_DAYS` days before the run; the model
is fitted on the interactions as they stood at the holdout's start (``load_signals(engine, holdout_start)``:
the weights decayed to that day, as production would have fitted then) and judged on the purchases (counted orders,
active products) of the holdout. A store with less than :data:`MIN_TRAIN_DAYS` days of signals before the holdout, or
fewer than :data:`MIN_TEST_USERS` customers known before the holdout who bought in it, is too small to judge.

**Promotion** (:func:`evaluate_candidate`, :func:`judge`). Each run's candidate is the current code with its current
parameters (:func:`current_parameters`); the serving version's parameters are re-fitted on the *same* train part and
judged on the *same* holdout, so the two differ only in their configuration. The metric is **NDCG@10 with re-buys
credited** (protocol ``include_seen``: items a customer bought before stay rankable and a re-buy in the holdout earns
credit, as production serves consumables), averaged over the customers known before the holdout who bought in it.
The candidate is promoted when it beats the serving version by more than :data:`MARGIN` (0: strictly better; both
fits are deterministic, one thread and the seed, so an equal score is a true tie and a tie keeps the serving
version). Also recorded: the same figures with re-buys excluded (LightFM's protocol), and the whole
``evaluate_recommendations`` harness (hybrid, popularity, re-buy, default LightFM) on the split, both protocols.

Other outcomes, each with its reason: the first model is promoted; ``--force`` promotes; a candidate with the serving
version's own parameters is promoted as its re-fit on newer data (the same configuration: nothing to judge); too
little data promotes with ``not enough data to evaluate``; a pinned serving version keeps serving (the candidate
stays ``candidate``). A candidate that is not promoted never reaches customers: the run fits the day's picks with the
serving version's parameters.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine

from models.errors import InputError
from models.evaluate_recommendations import evaluate_both_protocols, ranking_metrics
from models.interactions import (
    CART_EVENTS,
    EVENTS,
    ORDER_LINES,
    ORDERS,
    PRODUCTS,
    Columns,
    InteractionWeights,
    counted_order,
    item_features,
    load_catalog,
    load_signals,
    pair_matrix,
    read_frame,
    table_of,
)
from models.recommend import HybridLightFM, train_and_recommend
from models.schema import ModelVersion, utcnow

STATUSES = ("candidate", "serving", "retired", "rejected")
KIND = "hybrid_lightfm+popularity"
"""What ``train_and_recommend`` fits: LightFM (WARP, item features) for warm customers, popularity for cold ones."""
RUN_ARGUMENTS = frozenset({"engine", "k", "now", "num_threads", "rules", "store_tz"})
"""Arguments of ``train_and_recommend`` that belong to a run, not to a model: every other keyword is a parameter."""

K = 10
METRIC = "ndcg_at_k"
DECISIVE = "include_seen"
"""The protocol promotion is judged on: re-buys credited (``exclude_seen`` is LightFM's, recorded alongside)."""
PROTOCOLS = {"exclude_seen": False, "include_seen": True}
MARGIN = 0.0
"""How much higher the candidate's NDCG@10 must be (strictly): none, both fits are deterministic."""
HOLDOUT_DAYS = 28
MIN_TRAIN_DAYS = 14
MIN_TEST_USERS = 20
CHUNK_USERS = 1024
NOT_ENOUGH_DATA = "not enough data to evaluate"


# ---- parameters ---------------------------------------------------------------------------------------------------
def current_parameters() -> dict[str, Any]:
    """The candidate's configuration: the model kind and every model keyword of ``train_and_recommend`` with the
    default this release gives it (JSON scalars only)."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(train_and_recommend).parameters.items()
        if name not in RUN_ARGUMENTS and isinstance(p.default, bool | int | float | str)
    }
    return {"kind": KIND, **defaults}


def code_version() -> str:
    try:
        return metadata.version("omnicast")
    except metadata.PackageNotFoundError:  # a checkout run without installing
        return "unknown"


class ParametersMismatch(InputError):
    """A version's parameters cannot be run by this release (another kind, or a hyperparameter it no longer takes)."""


def fit_arguments(parameters: dict[str, Any]) -> dict[str, Any]:
    """``train_and_recommend`` keywords from a version's parameters; :class:`ParametersMismatch` when they do not
    apply to this release. Parameters added since the version was trained take this release's defaults."""
    kind = parameters.get("kind")
    if kind != KIND:
        raise ParametersMismatch(f"model kind {kind!r} is not what this omnicast trains ({KIND!r})")
    accepted = set(inspect.signature(train_and_recommend).parameters) - RUN_ARGUMENTS
    unknown = sorted(set(parameters) - {"kind"} - accepted)
    if unknown:
        raise ParametersMismatch(
            f"parameter(s) {', '.join(unknown)} are no longer taken by this omnicast "
            f"(it takes {', '.join(sorted(accepted))})"
        )
    return {name: value for name, value in parameters.items() if name != "kind"}


def same_configuration(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two parameter sets fit the same model here (missing keys count as this release's defaults)."""
    defaults = current_parameters()
    return {**defaults, **a} == {**defaults, **b}


# ---- the data ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeSplit:
    """Interactions as they stood at ``holdout_start`` (fit on them) and the purchases after it (judge on them)."""

    train: pd.DataFrame
    test: pd.DataFrame
    features: pd.DataFrame
    holdout_start: datetime
    holdout_end: datetime


def data_window(engine: Engine, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The earliest and latest signal a fit at ``now`` reads: counted purchases of active products (all history) and
    cart and view events (within their lookbacks), as ``load_signals`` reads them."""
    weights = InteractionWeights()
    since = now - timedelta(days=max(weights.cart_lookback_days, weights.view_lookback_days))
    purchases = (
        select(func.min(ORDERS.c.created_at), func.max(ORDERS.c.created_at))
        .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id).join(
            PRODUCTS, PRODUCTS.c.id == ORDER_LINES.c.product_id))
        .where(ORDERS.c.customer_id.is_not(None), ORDERS.c.created_at <= now, PRODUCTS.c.active.is_(True),
               counted_order())
    )  # fmt: skip
    events = (
        select(func.min(EVENTS.c.occurred_at), func.max(EVENTS.c.occurred_at))
        .select_from(EVENTS.join(PRODUCTS, PRODUCTS.c.id == EVENTS.c.product_id))
        .where(EVENTS.c.customer_id.is_not(None), EVENTS.c.occurred_at <= now, EVENTS.c.occurred_at >= since,
               EVENTS.c.event_name.in_((*CART_EVENTS, "view_item")), PRODUCTS.c.active.is_(True))
    )  # fmt: skip
    with engine.connect() as conn:
        bounds = [*conn.execute(purchases).one(), *conn.execute(events).one()]
    firsts, lasts = [b for b in bounds[0::2] if b is not None], [b for b in bounds[1::2] if b is not None]
    return (min(firsts) if firsts else None), (max(lasts) if lasts else None)


def holdout_purchases(engine: Engine, start: datetime, end: datetime) -> pd.DataFrame:
    """``user_id, item_id`` of every counted purchase of an active product in ``(start, end]``."""
    stmt = (
        select(ORDERS.c.customer_id.label(Columns.USER), ORDER_LINES.c.product_id.label(Columns.ITEM))
        .select_from(ORDER_LINES.join(ORDERS, ORDERS.c.id == ORDER_LINES.c.order_id).join(
            PRODUCTS, PRODUCTS.c.id == ORDER_LINES.c.product_id))
        .where(ORDERS.c.customer_id.is_not(None), ORDERS.c.created_at > start, ORDERS.c.created_at <= end,
               PRODUCTS.c.active.is_(True), counted_order())
    )  # fmt: skip
    return read_frame(engine, stmt)


def time_split(
    engine: Engine, now: datetime, first_signal: datetime | None, holdout_days: int = HOLDOUT_DAYS
) -> TimeSplit | str:
    """The split (module docstring), or why the store is too small for one (a sentence with the counts)."""
    start = now - timedelta(days=holdout_days)
    if first_signal is None:
        return f"{NOT_ENOUGH_DATA}: no purchases or events yet"
    history_days = (start - first_signal).total_seconds() / 86_400
    if history_days < MIN_TRAIN_DAYS:
        return (
            f"{NOT_ENOUGH_DATA}: {max(history_days, 0):.0f} days of data before the {holdout_days}-day holdout "
            f"(needs {MIN_TRAIN_DAYS})"
        )
    train = load_signals(engine, start)  # one row per purchase or event, as production fits on
    test = holdout_purchases(engine, start, now)
    known = test[test[Columns.USER].isin(train[Columns.USER])]
    buyers = int(known[Columns.USER].nunique())
    if buyers < MIN_TEST_USERS:
        return (
            f"{NOT_ENOUGH_DATA}: {buyers} customers known before the {holdout_days}-day holdout bought in it "
            f"(needs {MIN_TEST_USERS})"
        )
    return TimeSplit(train, test, item_features(load_catalog(engine)), start, now)


# ---- figures ---------------------------------------------------------------------------------------------------------
def fit_on_split(parameters: dict[str, Any], split: TimeSplit) -> HybridLightFM:
    """The warm-customer model ``train_and_recommend`` fits with ``parameters``, fitted on the split's train part
    (one thread: the same parameters on the same data give the same model).

    The one place that knows what production fits: when ``train_and_recommend`` fits more than the model takes, this
    must fit the same, or the registry judges something customers do not get (:func:`unjudged` names the
    parameters it cannot pass on; the figures record them)."""
    arguments = fit_arguments(parameters)
    model = HybridLightFM(**{k: v for k, v in arguments.items() if k not in unjudged(parameters)}, num_threads=1)
    return model.fit(split.train, split.features)


def unjudged(parameters: dict[str, Any]) -> list[str]:
    """Parameters ``train_and_recommend`` takes that the holdout fit cannot pass to the model: two versions that
    differ only in these score the same on the holdout."""
    accepted = set(inspect.signature(HybridLightFM.__init__).parameters)
    return sorted(set(parameters) - {"kind"} - accepted)


def holdout_figures(
    parameters: dict[str, Any], split: TimeSplit, k: int = K, *, fitted_model: HybridLightFM | None = None
) -> dict[str, Any]:
    """Precision, recall and NDCG at ``k`` of the model fitted with ``parameters`` (``fitted_model``: already fitted
    on the split), per protocol (``exclude_seen``, ``include_seen``), with the number of customers judged and the fit
    time; the harness's metric definitions (``ranking_metrics``) on the model's own ranking (``rank_rows``)."""
    started = time.perf_counter()
    model = fitted_model if fitted_model is not None else fit_on_split(parameters, split)
    fitted = time.perf_counter() - started
    figures: dict[str, Any] = {"fit_seconds": round(fitted, 3)}
    if unjudged(parameters):
        figures["unjudged_parameters"] = unjudged(parameters)
    chosen = getattr(model, "settings", None)  # what the model's own validation chose, where it says
    if callable(chosen):
        figures["settings"] = _json_ready(chosen())
    relevant_all = (pair_matrix(model.users_, model.items_, split.test) > 0).astype(np.float32).tocsr()
    seen = (model.seen_ > 0).astype(np.float32).tocsr()
    for protocol, include_seen in PROTOCOLS.items():
        relevant = relevant_all if include_seen else _without(relevant_all, seen)
        rows = np.flatnonzero(np.diff(relevant.indptr) > 0)
        parts = []
        for begin in range(0, len(rows), CHUNK_USERS):
            chunk = rows[begin : begin + CHUNK_USERS]
            blocked = sp.csr_matrix((len(chunk), len(model.items_)), dtype=np.float32) if include_seen else seen[chunk]
            parts.append(_metrics_of_ranking(model, chunk, relevant[chunk], blocked, k))
        figures[protocol] = {
            **{f"{name}_at_k": _mean(parts, name) for name in ("precision", "recall", "ndcg")},
            "users": int(len(rows)),
            "k": k,
        }
    return figures


_HOLDOUT_FIGURES = holdout_figures  # the default scorer (tests may replace the module's name with their own)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # PostgreSQL's JSON has no NaN
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _without(relevant: sp.csr_matrix, seen: sp.csr_matrix) -> sp.csr_matrix:
    out = (relevant - relevant.multiply(seen > 0)).tocsr()
    out.eliminate_zeros()
    return out


def _metrics_of_ranking(
    model: HybridLightFM, rows: np.ndarray, relevant: sp.csr_matrix, blocked: sp.csr_matrix, k: int
) -> dict[str, np.ndarray]:
    """``ranking_metrics`` of the model's top ``k``: its picks get descending finite scores, every other item -inf
    (not ranked), so the metrics see exactly the ranking production would serve."""
    top, _ = model.rank_rows(rows, k, blocked)
    scores = np.full((len(rows), len(model.items_)), -np.inf)
    picked = top >= 0
    scores[np.nonzero(picked)[0], top[picked]] = (top.shape[1] - np.nonzero(picked)[1]).astype(float)
    return ranking_metrics(scores, relevant, blocked, k, with_auc=False)


def _mean(parts: list[dict[str, np.ndarray]], name: str) -> float | None:
    values = np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
    return round(float(values.mean()), 6) if len(values) else None


def harness_figures(split: TimeSplit, k: int = K, hybrid: HybridLightFM | None = None) -> dict[str, Any]:
    """``evaluate_recommendations`` (every model it reports) on the split, in both protocols from one fit (the
    candidate's, when given); a protocol with nothing to judge (e.g. every holdout purchase a re-buy, with re-buys
    excluded) says why instead."""
    return dict(evaluate_both_protocols(split.train, split.test, split.features, k=k, hybrid=hybrid))


def score_of(figures: dict[str, Any] | None) -> float | None:
    """The decisive figure: NDCG@10 with re-buys credited."""
    if not figures:
        return None
    value = figures.get(DECISIVE, {}).get(METRIC)
    return None if value is None else float(value)


# ---- the decision --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Serving:
    """What the registry knows of the serving version when a run starts."""

    version: int
    parameters: dict[str, Any]
    pinned: bool = False
    pinned_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    """What a train run decided: the new version's status and reason, what the day's picks are fitted with, and what
    the row records."""

    status: str
    reason: str
    parameters: dict[str, Any]
    serve_parameters: dict[str, Any]
    serving_before: int | None
    evaluation: dict[str, Any] = field(default_factory=dict)
    first_interaction_at: datetime | None = None
    last_interaction_at: datetime | None = None
    holdout_start: datetime | None = None
    holdout_end: datetime | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "serving"


def _figures_text(candidate: float | None, serving: float | None, version: int | None) -> str:
    if candidate is None:
        return ""
    against = f" vs {serving:.4f} for v{version}" if serving is not None and version is not None else ""
    return f" (NDCG@10 with re-buys {candidate:.4f}{against})"


def judge(
    *,
    serving: Serving | None,
    serving_usable: str | None,
    shortfall: str | None,
    candidate_score: float | None,
    serving_score: float | None,
    same_parameters: bool,
    force: bool,
) -> tuple[str, str]:
    """The new version's status and the reason, first rule that holds (module docstring).

    ``serving_usable`` is why the serving version's parameters cannot run here (None: they can); ``shortfall`` why
    the store cannot be judged (None: it can)."""
    version = serving.version if serving else None
    figures = _figures_text(candidate_score, serving_score, version)
    if force:
        return "serving", f"promoted with --force{figures}"
    if serving is None:
        return "serving", f"first model{figures}" if not shortfall else f"first model; {shortfall}"
    if serving_usable:
        return "serving", f"promoted: serving v{version} cannot run on this omnicast ({serving_usable}){figures}"
    if serving.pinned:
        when = f" on {serving.pinned_at:%Y-%m-%d}" if serving.pinned_at else ""
        return "candidate", (
            f"not promoted: v{version} was promoted by hand{when} and stays until `omnicast models promote` or "
            f"`omnicast train --force`{figures}"
        )
    if shortfall:
        return "serving", f"promoted: {shortfall}"
    if same_parameters:
        return "serving", f"promoted: same parameters as v{version}, re-fitted on newer data{figures}"
    assert candidate_score is not None and serving_score is not None
    if candidate_score > serving_score + MARGIN:
        return "serving", f"promoted: beats v{version}{figures}"
    return "rejected", f"not promoted: does not beat v{version}{figures}; v{version} keeps serving"


Figures = Any  # Callable[[dict[str, Any], TimeSplit], dict[str, Any]]; tests pass their own


def evaluate_candidate(
    engine: Engine,
    now: datetime,
    parameters: dict[str, Any] | None = None,
    *,
    force: bool = False,
    holdout_days: int = HOLDOUT_DAYS,
    figures: Figures | None = None,
    with_harness: bool = True,
) -> Decision:
    """Judge ``parameters`` (default :func:`current_parameters`) against the serving version on one time split and
    decide (module docstring). Reads only; :func:`register` writes the decision. ``figures`` (default
    :func:`holdout_figures`) scores one parameter set on the split; ``with_harness`` adds the harness's figures."""
    parameters = parameters or current_parameters()
    figures = figures or holdout_figures
    fit_arguments(parameters)  # the candidate must run here (a bug otherwise)
    started = time.perf_counter()
    serving = serving_version(engine)
    usable: str | None = None
    if serving is not None:
        try:
            fit_arguments(serving.parameters)
        except ParametersMismatch as exc:
            usable = str(exc)
    first, last = data_window(engine, now)
    split = time_split(engine, now, first, holdout_days)
    shortfall = split if isinstance(split, str) else None
    evaluation: dict[str, Any] = {"metric": f"ndcg_at_{K}", "decisive_protocol": DECISIVE, "margin": MARGIN,
                                  "holdout_days": holdout_days}  # fmt: skip
    same = serving is not None and usable is None and same_configuration(parameters, serving.parameters)
    candidate_score = serving_score = None
    if isinstance(split, TimeSplit):
        # the default figures fit the candidate once and lend that model to the harness (the same fit: one thread,
        # one seed), instead of fitting it twice
        model = fit_on_split(parameters, split) if figures is _HOLDOUT_FIGURES and not unjudged(parameters) else None
        candidate = (
            holdout_figures(parameters, split, fitted_model=model) if model is not None else figures(parameters, split)
        )
        evaluation["candidate"] = candidate
        evaluation["split"] = {
            "train_interactions": len(split.train),
            "test_purchases": len(split.test),
            "test_customers": int(split.test[Columns.USER].nunique()),
        }
        candidate_score = score_of(candidate)
        if serving is not None and usable is None:
            judged = candidate if same else figures(serving.parameters, split)
            evaluation["serving"] = {"version": serving.version, "same_parameters": same, **judged}
            serving_score = score_of(judged)
        if with_harness:
            evaluation["harness"] = _json_ready(harness_figures(split, hybrid=model))
    else:
        evaluation["not_evaluated"] = shortfall
    evaluation["seconds"] = round(time.perf_counter() - started, 3)
    status, reason = judge(
        serving=serving, serving_usable=usable, shortfall=shortfall, candidate_score=candidate_score,
        serving_score=serving_score, same_parameters=same, force=force,
    )  # fmt: skip
    serve = parameters if status == "serving" or serving is None else serving.parameters
    return Decision(
        status=status,
        reason=reason,
        parameters=parameters,
        serve_parameters=serve,
        serving_before=serving.version if serving else None,
        evaluation=evaluation,
        first_interaction_at=first,
        last_interaction_at=last,
        holdout_start=split.holdout_start if isinstance(split, TimeSplit) else None,
        holdout_end=split.holdout_end if isinstance(split, TimeSplit) else None,
    )


# ---- the table ---------------------------------------------------------------------------------------------------
TABLE = table_of(ModelVersion)


def _row(mapping: Any) -> ModelVersion:
    return ModelVersion.model_validate(dict(mapping))


def serving_version(engine: Engine | Connection) -> Serving | None:
    """The version whose parameters fit the day's picks (None before the first train run)."""
    row = _select_one(engine, select(TABLE).where(TABLE.c.status == "serving").order_by(TABLE.c.version.desc()))
    if row is None:
        return None
    return Serving(row.version, dict(row.parameters), row.pinned, row.promoted_at if row.pinned else None)


def _select_one(engine: Engine | Connection, stmt: Any) -> ModelVersion | None:
    if isinstance(engine, Engine):
        with engine.connect() as conn:
            return _select_one(conn, stmt)
    found = engine.execute(stmt.limit(1)).mappings().first()
    return _row(found) if found is not None else None


def list_versions(engine: Engine) -> list[ModelVersion]:
    """Every version, newest first."""
    with engine.connect() as conn:
        return [_row(m) for m in conn.execute(select(TABLE).order_by(TABLE.c.version.desc())).mappings()]


def get_version(engine: Engine, version: int) -> ModelVersion | None:
    return _select_one(engine, select(TABLE).where(TABLE.c.version == version))


def register(engine: Engine, decision: Decision, trained_at: datetime) -> ModelVersion:
    """Record the run's version (next number) and, when it was promoted, retire the one that served; one
    transaction. Callers hold the train lock (versions are numbered by reading the highest)."""
    with engine.begin() as conn:
        version = int(conn.execute(select(func.coalesce(func.max(TABLE.c.version), 0))).scalar_one()) + 1
        if decision.promoted:
            _retire_serving(conn, trained_at)
        conn.execute(
            insert(TABLE).values(
                version=version,
                trained_at=trained_at,
                status=decision.status,
                parameters=decision.parameters,
                code_version=code_version(),
                first_interaction_at=decision.first_interaction_at,
                last_interaction_at=decision.last_interaction_at,
                holdout_start=decision.holdout_start,
                holdout_end=decision.holdout_end,
                evaluation=decision.evaluation,
                reason=decision.reason,
                promoted_at=trained_at if decision.promoted else None,
                retired_at=None,
                pinned=False,
            )
        )
    found = get_version(engine, version)
    assert found is not None
    return found


def _retire_serving(conn: Connection, when: datetime) -> None:
    conn.execute(
        update(TABLE).where(TABLE.c.status == "serving").values(status="retired", retired_at=when, pinned=False)
    )


def promote_by_hand(engine: Engine, version: int, now: datetime | None = None) -> ModelVersion:
    """Make ``version`` serve and pin it (a rollback, or a candidate the operator trusts): the next train runs fit
    the picks with its parameters. :class:`InputError` for an unknown version or parameters this release cannot
    run. Callers hold the train lock."""
    now = now or utcnow()
    row = get_version(engine, version)
    if row is None:
        raise InputError(f"no model version {version}; `omnicast models list` shows the versions there are")
    try:
        fit_arguments(dict(row.parameters))
    except ParametersMismatch as exc:
        raise InputError(f"v{version} cannot serve on this omnicast: {exc}") from None
    before = serving_version(engine)
    with engine.begin() as conn:
        if before is None or before.version != version:
            _retire_serving(conn, now)
        conn.execute(
            update(TABLE)
            .where(TABLE.c.version == version)
            .values(
                status="serving",
                promoted_at=now,
                retired_at=None,
                pinned=True,
                reason=_hand_reason(row, before, now),
            )
        )
    found = get_version(engine, version)
    assert found is not None
    return found


def _hand_reason(row: ModelVersion, before: Serving | None, now: datetime) -> str:
    replaced = f" in place of v{before.version}" if before is not None and before.version != row.version else ""
    return f"promoted by hand on {now:%Y-%m-%d %H:%M} UTC{replaced} (pinned); before: {row.reason}"


# ---- reading it back -----------------------------------------------------------------------------------------------
def summary(row: ModelVersion) -> dict[str, Any]:
    """One version as ``omnicast models list`` shows it (JSON-ready): NDCG@10 in both protocols, and the difference
    from the version that was serving when it was judged (same split, re-buys credited)."""
    evaluation = row.evaluation or {}
    candidate = evaluation.get("candidate") or {}
    serving = evaluation.get("serving") or {}
    own, theirs = score_of(candidate), score_of(serving)
    return {
        "version": row.version,
        "status": row.status,
        "pinned": row.pinned,
        "trained_at": _iso(row.trained_at),
        "promoted_at": _iso(row.promoted_at),
        "retired_at": _iso(row.retired_at),
        "code_version": row.code_version,
        "parameters": row.parameters,
        "window": {
            "first_interaction_at": _iso(row.first_interaction_at),
            "last_interaction_at": _iso(row.last_interaction_at),
            "holdout_start": _iso(row.holdout_start),
            "holdout_end": _iso(row.holdout_end),
        },
        "ndcg_at_10": {p: (candidate.get(p) or {}).get(METRIC) for p in PROTOCOLS},
        "test_customers": (candidate.get(DECISIVE) or {}).get("users"),
        "vs_serving": None if own is None or theirs is None else {
            "version": serving.get("version"), "ndcg_at_10": theirs, "difference": round(own - theirs, 6),
        },
        "reason": row.reason,
    }  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def latest_version(engine: Engine) -> ModelVersion | None:
    return _select_one(engine, select(TABLE).order_by(TABLE.c.version.desc()))


__all__ = [
    "Decision",
    "ParametersMismatch",
    "Serving",
    "TimeSplit",
    "current_parameters",
    "evaluate_candidate",
    "fit_arguments",
    "holdout_figures",
    "judge",
    "list_versions",
    "promote_by_hand",
    "register",
    "serving_version",
    "summary",
    "time_split",
]
