"""``omnicast evaluate churn|recommendations``: the models scored offline on files of history.

* ``churn --transactions F --calibration-end DATE --holdout-end DATE [--json]``: how well the repeat-purchase model
  predicts a holdout period, against a naive baseline (``models/evaluate.py``);
* ``recommendations --train F --test F [--item-features F] [--user-features F] [--k 10] [--include-seen] [--json]``:
  production's hybrid against popularity, re-buy and a default LightFM (``models/evaluate_recommendations.py``).

``register(app)`` adds the ``evaluate`` group to the ``omnicast`` Typer app (flows/cli.py). No database and no Prefect
server are needed: everything comes from the files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.console import make_console

console = make_console()
evaluate_app = typer.Typer(help="Offline evaluation of the models on a file of history.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to ``app``."""
    app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.command("churn")
def churn(
    transactions: Annotated[Path, typer.Option(help="CSV with a header: customer_id,date[,amount].")],
    calibration_end: Annotated[str, typer.Option(help="Last day of the calibration period (YYYY-MM-DD).")],
    holdout_end: Annotated[str, typer.Option(help="Last day of the holdout period (YYYY-MM-DD).")],
    as_json: Annotated[bool, typer.Option("--json", help='Print {"model": {...}, "naive": {...}} as JSON.')] = False,
) -> None:
    """Fit the repeat-purchase model (MBG/NBD) on the calibration period and score its holdout predictions per
    customer against a naive recency/frequency baseline: totals, relative error, MAE, RMSE, correlation, AUC."""
    from flows.runtime import parse_day
    from models.evaluate import evaluate_churn, read_transactions

    start = parse_day(calibration_end, "--calibration-end")
    end = parse_day(holdout_end, "--holdout-end")
    result = evaluate_churn(read_transactions(transactions), start, end)
    if as_json:
        sys.stdout.write(json.dumps(result.as_json(), sort_keys=True) + "\n")
        return
    table = Table("", "customers", "holdout actual", "predicted", "relative error", "MAE", "RMSE", "correlation",
                  "AUC", title=f"Holdout {start} … {end}", title_justify="left")  # fmt: skip
    for name, figures in (("MBG/NBD model", result.model), ("naive: own rate", result.naive)):
        table.add_row(name, f"{figures['customers']:,}", f"{figures['holdout_actual']:,.0f}",
                      f"{figures['holdout_predicted']:,.1f}", _number(figures["relative_error"], "{:+.1%}"),
                      _number(figures["mae"]), _number(figures["rmse"]), _number(figures["correlation"]),
                      _number(figures["auc"]))  # fmt: skip
    console.print(table)
    params = result.model["params"]
    fitted = "fitted" if result.model["fitted"] else "the stated prior (too little data to fit)"
    console.print(f"MBG/NBD parameters ({fitted}): r={params['r']:.4f} alpha={params['alpha']:.4f} "
                  f"a={params['a']:.4f} b={params['b']:.4f}; log-likelihood {result.model['log_likelihood']:,.2f}")


def _number(value: float | None, form: str = "{:.3f}") -> str:
    return "–" if value is None else form.format(value)


@evaluate_app.command("recommendations")
def recommendations(
    train: Annotated[Path, typer.Option(help="CSV with a header: user_id,item_id[,timestamp][,weight].")],
    test: Annotated[Path, typer.Option(help="CSV with a header: user_id,item_id[,timestamp][,weight].")],
    item_features: Annotated[
        Path | None, typer.Option(help="CSV: item_id and feature columns ('|' for several values; numbers binned).")
    ] = None,
    user_features: Annotated[
        Path | None, typer.Option(help="CSV: user_id and feature columns ('|' for several values; numbers binned).")
    ] = None,
    k: Annotated[int, typer.Option(help="Length of each user's ranking that is scored.")] = 10,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="Keep train items rankable and creditable (re-buys).")
    ] = False,
    tune: Annotated[
        bool,
        typer.Option("--tune", help="Choose the hybrid's hyperparameters on a validation split of train first."),
    ] = False,
    tune_budget: Annotated[
        float, typer.Option(help="Seconds --tune may spend starting trials (one running trial may overrun it).")
    ] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one key per model as JSON.")] = False,
) -> None:
    """Fit production's hybrid LightFM, popularity, re-buy and a default LightFM on the train file and score their top
    k on the test file: precision, recall and NDCG at k, AUC, catalogue coverage, fit time."""
    from models.evaluate_recommendations import evaluate_recommendations, read_features, read_interactions

    result = evaluate_recommendations(
        read_interactions(train, "--train"),
        read_interactions(test, "--test"),
        read_features(item_features, "item_id", "--item-features") if item_features else None,
        read_features(user_features, "user_id", "--user-features") if user_features else None,
        k=k,
        include_seen=include_seen,
        tune=tune,
        tune_budget_seconds=tune_budget,
    )
    if as_json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
        return
    first = next(iter(result.values()))
    seen = "train items rankable (--include-seen)" if include_seen else "train items excluded"
    table = Table("", f"precision@{k}", f"recall@{k}", f"NDCG@{k}", "AUC", "coverage", "fit s",
                  title=f"{first['users']:,} users, {seen}", title_justify="left")  # fmt: skip
    for name, figures in result.items():
        table.add_row(name, _number(figures["precision_at_k"]), _number(figures["recall_at_k"]),
                      _number(figures["ndcg_at_k"]), _number(figures["auc"]), _number(figures["coverage"], "{:.1%}"),
                      f"{figures['fit_seconds']:.2f}")  # fmt: skip
    console.print(table)
    tuning = result["hybrid"].get("tuning")
    if tuning and "skipped" in tuning:
        console.print(f"--tune skipped: {tuning['skipped']}; the hybrid used production's settings.")
    elif tuning:
        console.print(
            f"--tune: {tuning['trials']} trials in {tuning['seconds']:.0f} s (budget {tuning['budget_seconds']:.0f} s);"
            f" chosen {tuning['best']}"
        )
