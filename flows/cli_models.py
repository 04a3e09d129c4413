"""``omnicast models list|promote VERSION``: the model registry (``models/registry.py``) as an operator reads it.

* ``list [--json]``: every trained version, newest first: status, when trained, where its data and its holdout
  start (both end when it was trained; ``--json`` has the exact window), NDCG@10 on the holdout in both protocols
  (re-buys credited, which decides promotion, and re-buys excluded), the difference from the version that was
  serving when it was judged (same split), and why it was promoted or not;
* ``promote VERSION``: make a version serve again (a rollback, or a candidate you trust) and pin it: the train runs
  fit the picks with its parameters until another version is promoted by hand or `omnicast train --force` runs.

``register(app)`` adds the ``models`` group to the ``omnicast`` Typer app (flows/cli.py). Errors (no such version,
parameters this release cannot run, an unusable database URL) are one ``error:`` line, exit code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from flows.console import make_console

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine

console = make_console()
models_app = typer.Typer(help="The model registry: trained versions, and which one serves.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``models`` group to ``app``."""
    app.add_typer(models_app, name="models")


@contextmanager
def _database() -> Iterator[tuple[Any, Engine]]:
    from flows.runtime import load_settings, open_database

    settings = load_settings()
    engine = open_database(settings)
    try:
        yield settings, engine
    finally:
        engine.dispose()


@models_app.command("list")
def list_models(as_json: Annotated[bool, typer.Option("--json", help="Print every version as JSON.")] = False) -> None:
    """Every trained version, newest first: status, window, NDCG@10 on the holdout, versus the serving one, why."""
    from models.registry import list_versions, summary

    with _database() as (_, engine):
        rows = [summary(row) for row in list_versions(engine)]
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    if not rows:
        console.print("no model trained yet: `omnicast train` (or the daily run) trains and registers the first")
        return
    table = Table(title="Model versions (NDCG@10 on the holdout: re-buys credited / excluded)", title_justify="left")
    for column in ("version", "status", "trained", "data since", "holdout since", "NDCG@10", "vs serving", "why"):
        table.add_column(column, overflow="fold", no_wrap=column != "why")
    for row in rows:
        table.add_row(
            f"v{row['version']}",
            row["status"] + (" (pinned)" if row["pinned"] else ""),
            _day(row["trained_at"]),
            _day(row["window"]["first_interaction_at"]),
            _day(row["window"]["holdout_start"]) if row["window"]["holdout_start"] else "not evaluated",
            f"{_number(row['ndcg_at_10']['include_seen'])} / {_number(row['ndcg_at_10']['exclude_seen'])}",
            _versus(row["vs_serving"]),
            row["reason"],
        )  # fmt: skip
    console.print(table)


@models_app.command("promote")
def promote(
    version: Annotated[int, typer.Argument(help="The version to serve, as `omnicast models list` shows it.")],
) -> None:
    """Make VERSION serve (a rollback) and pin it: train runs fit the picks with its parameters and record their
    new models without promoting them, until another `promote` or `omnicast train --force`."""
    from flows.runtime import locked
    from models.registry import promote_by_hand

    with _database() as (settings, engine), locked(engine, settings, "train"):
        row = promote_by_hand(engine, version)
    console.print(
        f"v{row.version} serves now (pinned): the next `omnicast train` (or daily run) fits every customer's picks "
        "with its parameters; run `omnicast train` to refit today's now"
    )


def print_latest(out: Console) -> None:
    """After a train run: the version it registered, its status and why (one line)."""
    from models.registry import latest_version

    with _database() as (_, engine):
        row = latest_version(engine)
    if row is not None:
        out.print(f"model v{row.version}: {row.status}: {row.reason}", highlight=False, markup=False, soft_wrap=True)


def _day(moment: str | None) -> str:
    return moment[:10] if moment else "–"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _versus(versus: dict[str, Any] | None) -> str:
    if not versus:
        return "–"
    return f"{versus['difference']:+.4f} vs v{versus['version']}"
