"""``omnicast preview CAMPAIGN``: the real email a campaign would send, for a real customer, before it goes out.

``register(app)`` adds the ``preview`` command to the ``omnicast`` Typer app (flows/cli.py).

* ``omnicast preview CAMPAIGN --customer EMAIL_OR_ID [--out FILE]`` writes that customer's email (a complete HTML
  page; to stdout without ``--out``), planned from the database exactly as a run would plan it today (their variant,
  their products, the campaign's diversity, their offer code) and rendered through ``channels.render``;
* ``omnicast preview CAMPAIGN --sample 12 --out DIR`` writes ``DIR/index.html``, a gallery of 12 sample customers'
  emails (spread over today's audience), with one HTML file per email beside it.

A preview writes nothing to the database: no ledger row, no variant assignment, no offer code (a customer without a
code is shown the one they would get next). Links go straight to the store with their UTM tags (no click tracking);
the unsubscribe link is an inert placeholder. A customer outside today's audience is previewed from their latest
moment of the campaign's trigger, or one made from their data; the command says so on stderr.
"""

from __future__ import annotations

import html
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.console import make_console

err = make_console(stderr=True)
MAX_SAMPLE = 200


def register(app: typer.Typer) -> None:
    """Add the ``preview`` command to ``app``."""
    app.command("preview")(preview)


def preview(
    campaign: Annotated[str, typer.Argument(help="Campaign name, e.g. weekly-picks.")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="The customer: their email address or customer id.")
    ] = None,
    sample: Annotated[
        int | None, typer.Option("--sample", min=1, max=MAX_SAMPLE, help="Preview this many sample customers.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="With --customer: the HTML file (default: stdout). With --sample: the folder."),
    ] = None,
    variant: Annotated[str | None, typer.Option("--variant", help="Show this variant instead of theirs.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Plan as on this day (YYYY-MM-DD).")] = None,
    folder: Annotated[
        Path | None,
        typer.Option("--dir", help="Campaigns folder (default: OMNICAST_CAMPAIGNS_DIR or the shipped one)."),
    ] = None,
) -> None:
    """Write the real email CAMPAIGN would send a customer (--customer), or a gallery of sample customers' emails
    (--sample N --out DIR). Writes nothing to the database."""
    from models.errors import InputError

    if (customer is None) == (sample is None):
        raise InputError("give either --customer EMAIL_OR_ID (one email) or --sample N --out DIR (a gallery)")
    if sample is not None and out is None:
        raise InputError("--sample writes a gallery: give the folder with --out DIR")
    previewer = Previewer.from_settings(campaign, folder, as_of)
    try:
        if customer is not None:
            write_one(previewer, customer, out, variant)
        else:
            assert sample is not None and out is not None
            write_gallery(previewer, sample, out, variant)
    finally:
        previewer.close()


class Previewer:
    """One campaign, the database and the renderer a preview needs."""

    def __init__(self, engine: Any, catalog: Any, spec: Any, store: Any, today: date) -> None:
        from channels.render import EmailRenderer

        self.engine = engine
        self.catalog = catalog
        self.spec = spec
        self.store = store
        self.today = today
        self.renderer = EmailRenderer()
        self.unsubscribe_url = f"{store.url.rstrip('/')}/u/preview"

    @classmethod
    def from_settings(cls, campaign: str, folder: Path | None, as_of: str | None) -> Previewer:
        from flows.runtime import load_settings, open_database, run_date
        from models.campaigns import load_catalog
        from models.planning import StoreInfo

        settings = load_settings()
        catalog = load_catalog(folder or settings.campaigns_dir)
        spec = catalog.campaign(campaign)
        if "email" not in spec.channels:
            err.print(f"note: campaign {spec.name} does not send email; previewing its email template anyway")
        store = StoreInfo(name=settings.store_name, url=settings.public_url, address=settings.store_address)
        today = run_date(settings, as_of)
        if not spec.runs_on(today):
            err.print(f"note: campaign {spec.name} would not run on {today} (disabled or outside its dates)")
        return cls(open_database(settings), catalog, spec, store, today)

    def close(self) -> None:
        self.engine.dispose()

    def customer_id(self, who: str) -> int:
        """The customer ``who`` names (an id, or an email address, any case)."""
        from sqlalchemy import func, select

        from models.errors import InputError
        from models.schema import Customer

        table = Customer.__table__  # type: ignore[attr-defined]
        text = who.strip()
        if text.isdigit():
            query = select(table.c.id, table.c.erased_at).where(table.c.id == int(text))
        else:
            query = select(table.c.id, table.c.erased_at).where(func.lower(table.c.email) == text.lower())
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(table.c.id).limit(1)).first()
        if row is None:
            raise InputError("no customer matches --customer; give an email address or a customer id from the database")
        if row.erased_at is not None:
            raise InputError(f"customer {row.id} was erased (omnicast forget): there is nobody to preview")
        return int(row.id)

    def plan(self, customer_ids: list[int], variant: str | None) -> Any:
        from models.preview import plan_preview

        return plan_preview(
            self.engine, self.spec, self.today, self.store, self.catalog.segments, customer_ids, variant=variant
        )

    def render(self, message: Any) -> Any:
        return self.renderer.render(message.template or self.spec.template, self.context(message))

    def context(self, message: Any) -> dict[str, Any]:
        return {**message.context, "unsubscribe_url": self.unsubscribe_url}


def write_one(previewer: Previewer, who: str, out: Path | None, variant: str | None) -> None:
    """One customer's email: HTML to ``out`` (or stdout), what it is on stderr."""
    customer_id = previewer.customer_id(who)
    planned = previewer.plan([customer_id], variant)
    message = planned.messages[customer_id]
    email = previewer.render(message)
    for note in planned.notes[customer_id]:
        err.print(f"note: customer {customer_id} {note}", highlight=False, markup=False, soft_wrap=True)
    if out is None:
        sys.stdout.write(email.html)
        return
    _write(out, email.html)
    err.print(
        f"wrote {out}: {previewer.spec.name} for customer {customer_id} (variant {message.variant}, template "
        f"{message.template}, {_count(message.context.get('products'), 'recommendation')}); subject: {email.subject}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def write_gallery(previewer: Previewer, count: int, out: Path, variant: str | None) -> None:
    """``count`` sample customers' emails into ``out``, with ``out/index.html`` showing them side by side."""
    from models.errors import InputError
    from models.preview import preview_sample

    spec = previewer.spec
    chosen = preview_sample(previewer.engine, spec, previewer.today, previewer.catalog.segments, count)
    if not chosen:
        raise InputError(f"campaign {spec.name!r} has nobody to preview: its audience is empty and no one has had its "
                         "moment yet")  # fmt: skip
    planned = previewer.plan(chosen, variant)
    cards: list[str] = []
    for n, customer_id in enumerate(chosen, start=1):
        message = planned.messages[customer_id]
        email = previewer.render(message)
        name = f"{n:02d}-customer-{customer_id}.html"
        _write(out / name, email.html)
        cards.append(_card(name, customer_id, message, email.subject, planned.notes[customer_id]))
    _write(out / "index.html", _gallery(spec, previewer.today, cards))
    err.print(f"wrote {out / 'index.html'}: {len(cards)} {spec.name} emails", highlight=False, markup=False)


def _write(path: Path, text: str) -> None:
    from models.errors import InputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--out {str(path)!r}: cannot write it ({exc.strerror or exc})") from exc


def _card(name: str, customer_id: int, message: Any, subject: str, notes: list[str]) -> str:
    context = message.context
    facts = [
        f"customer {customer_id}",
        f"variant {message.variant}",
        f"template {message.template}",
        f"picks: {context.get('picks')}",
        _count(context.get("products"), "recommendation"),
    ]
    if context.get("cart"):
        facts.append(f"{_count(context['cart'], 'item')} in the cart")
    if context.get("offer"):
        facts.append("offer code shown")
    notes_html = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    return (
        f'<figure><figcaption><a href="{html.escape(name)}"><b>{html.escape(subject)}</b></a>'
        f"<br><small>{html.escape(' · '.join(facts))}</small>"
        f"{f'<ul>{notes_html}</ul>' if notes_html else ''}</figcaption>"
        f'<iframe src="{html.escape(name)}" title="{html.escape(subject)}" loading="lazy"></iframe></figure>'
    )


def _count(items: Any, noun: str) -> str:
    n = len(items or [])
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _gallery(spec: Any, today: date, cards: list[str]) -> str:
    title = f"{spec.name}: {len(cards)} sample emails as of {today.isoformat()}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; background: #f6f3ef; color: #2b1d14; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 24px; }}
figure {{ margin: 0; background: #fff; border-radius: 8px; padding: 12px; box-shadow: 0 1px 3px #0002; }}
figcaption {{ font-size: 14px; margin-bottom: 8px; }} figcaption ul {{ margin: 4px 0; padding-left: 18px; }}
iframe {{ width: 100%; height: 900px; border: 1px solid #eadfce; border-radius: 4px; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Planned as a run would plan them (variant, products, offer code) without writing to the database. Links carry
their UTM tags and go straight to the store; the unsubscribe link is a placeholder.</p>
<main>
{chr(10).join(cards)}
</main></body></html>
"""
