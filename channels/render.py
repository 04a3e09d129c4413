"""Templates → personalized content: MJML compiled once per template version, Jinja per recipient.

Email (``templates/email/<name>.mjml``):

1. ``<mj-include path="…"/>`` is expanded textually (head partials too, which the ``mjml`` package can't do);
2. every source file is parsed by Jinja first, so a syntax error names the file and line a human edits;
3. MJML compiles the expanded source to HTML with the Jinja markup still inside (REFERENCE: Jinja survives
   ``mj-text`` and attributes; block tags must sit in ``<mj-raw>``);
4. the plain-text part is derived once from that HTML with html2text (Jinja protected by placeholders), so per
   recipient we only run two Jinja renders: ≈ 0.1 ms instead of ≈ 20 ms for MJML + 4 ms for html2text;
5. the subject is the template's ``<mj-title>`` rendered as plain text, then made header-safe
   (``channels.headers.header_text``: encoded-words decoded, control characters removed, ``=?`` neutralized).

Customer data is hostile: ``template_context`` cleans every string of the context and lets only absolute http(s)
URLs reach a link or an image (issue 5, defects 1 and 9).

The compiled result is cached by the SHA-256 of the template and every partial it includes: edit a file and
the next render recompiles it, without a restart.

In-app cards (``templates/inapp/<name>.json.j2``) render with every ``{{ … }}`` finalized through
``json.dumps``, so customer data can never break out of a JSON string.

Jinja runs in ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``: templates can't reach Python
internals or mutate the context, and a typo fails loudly instead of rendering an empty string. ``EmailRenderer(
strict=True)`` (the template tests) goes further: a ``{{ … }}`` that renders ``None`` or an empty string fails too,
so a sentence never has an empty slot ("Hi ,"); templates write optional pieces with ``{% if %}``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import html2text
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from mjml import mjml_to_html

import templates
from channels.headers import clean_text, header_text, safe_url
from models.context import picks_kind, topic_of

TEMPLATES_DIR = Path(templates.__file__).resolve().parent

_INCLUDE = re.compile(r"""<mj-include\s+path=["']([^"']+)["']\s*(?:/>|>\s*</mj-include>)""")
_TITLE = re.compile(r"<mj-title>(.*?)</mj-title>", re.DOTALL)
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_ESCAPED_IN_JINJA = re.compile(r"&(?:amp|lt|gt|quot|#\d+);")
_MAX_INCLUDE_DEPTH = 5
_RECHECK_SECONDS = 1.0
_CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "NZD": "NZ$"}


class TemplateError(Exception):
    """A template can't be used: names the template, and the file and line when there is one."""

    def __init__(self, template: str, reason: str, *, file: str | None = None, line: int | None = None) -> None:
        self.template = template
        self.file = file
        self.line = line
        where = f" ({file}{f', line {line}' if line else ''})" if file else ""
        super().__init__(f"template {template!r}{where}: {reason}")


class TemplateNotFoundError(TemplateError):
    """No template of that name exists in the templates folder."""


class TemplateRenderError(TemplateError):
    """The template compiled but failed for one recipient's context (missing key, bad value)."""


@dataclass(frozen=True)
class RenderedEmail:
    """One recipient's email content, ready for MIME."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class CompiledEmail:
    """One template version, compiled: three Jinja templates that only need a context."""

    name: str
    digest: str
    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template


def money(value: float | int | None, currency: str = "USD") -> str:
    """``18.5`` → ``$18.50``; empty for a missing price so a template never shows ``$None``."""
    if value is None:
        return ""
    symbol = _CURRENCY_SYMBOLS.get(currency.upper(), f"{currency.upper()} ")
    return f"{symbol}{value:,.2f}"


class _DataSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, looking ``product.title`` up as a dict key first.

    Jinja tries ``getattr`` first and falls back to the key on ``AttributeError``; with dict contexts that is
    one raised and caught exception per lookup, a large share of a recipient's render time.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _environment(*, autoescape: bool, **options: Any) -> ImmutableSandboxedEnvironment:
    env = _DataSandbox(autoescape=autoescape, undefined=jinja2.StrictUndefined, **options)
    env.filters["money"] = money
    return env


def _strict_finalize(value: Any) -> Any:
    """``EmailRenderer(strict=True)``: an expression that renders nothing is a template bug (an empty slot)."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises with the missing name
    if value is None or (isinstance(value, str) and not value.strip()):
        raise jinja2.TemplateRuntimeError(
            f"a {{{{ … }}}} rendered {value!r}: an empty slot in the text; write optional pieces with {{% if %}}"
        )
    return value


def _json_finalize(value: Any) -> str:
    """Every ``{{ … }}`` in a card template becomes a JSON literal (string, number, list, null)."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises with the missing name
    return json.dumps(value, ensure_ascii=False)


_HTML_ENV = _environment(autoescape=True)
_TEXT_ENV = _environment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
_STRICT_HTML_ENV = _environment(autoescape=True, finalize=_strict_finalize)
_STRICT_TEXT_ENV = _environment(autoescape=False, finalize=_strict_finalize, trim_blocks=True, lstrip_blocks=True)
_CARD_ENV = _environment(autoescape=False, finalize=_json_finalize, trim_blocks=True, lstrip_blocks=True)

_COMPILED: dict[tuple[str, bool], CompiledEmail] = {}
_COMPILE_LOCK = threading.Lock()


_PRODUCT_KEYS = ("sku", "title", "url", "image_url", "price", "explanation", "kind", "product_type", "topic")
_CONTRACT = (
    "store", "customer", "products", "cart", "refill", "trigger", "offer", "subject", "topic", "picks", "taste_known",
)  # fmt: skip


def template_context(context: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The planner's context with every contract key present and every value safe to render.

    Contract (``templates/email/README.md``, filled by ``models/planning.py``): ``store{name,url,address,currency}``,
    ``customer{first_name}``, ``campaign``, ``variant``, ``subject`` (a variant's subject line, else ``None``),
    ``offer{code,description}`` (or ``None``: no gift is promised), ``topic`` (``coffee``, ``tea``, ``coffee and
    tea`` or ``""``), ``picks`` (``personal``, ``popular``, ``mixed``, ``none``), ``taste_known`` (the customer has
    personal recommendations, even when none made it into this email), ``products`` (recommendations),
    ``cart`` (the items in an abandoned cart), ``refill`` (the product running low, or ``None``), each product
    ``{sku,title,url,image_url,price,explanation,kind,product_type,topic}``, and ``trigger{kind,…}``; channels add
    more via ``extra`` (the email channel adds ``unsubscribe_url``), which is trusted and left as it is. A key the
    context lacks gets its empty value (``None``, ``[]``); ``topic`` and ``picks`` are derived from the products when
    absent (a payload planned by an earlier version has neither and keeps its wording: "coffee", "personal").

    Customer data is hostile (channels/headers.py): every string is ``clean_text``-ed (no control or invisible
    format characters), and only absolute http(s) URLs reach a link or an image: an unsafe ``image_url`` becomes
    ``None`` (templates then show no image), an unsafe product ``url`` becomes the store's URL, an unsafe
    ``trigger.*_url`` is removed (templates fall back), an unsafe ``store.url`` becomes ``""``.
    """
    store = _cleaned({"name": "", "url": "", "address": "", "currency": "USD", **dict(context.get("store") or {})})
    store["url"] = safe_url(store["url"]) or ""
    customer = _cleaned({"first_name": None, **dict(context.get("customer") or {})})
    products = [_product(item, store["url"]) for item in context.get("products") or []]
    cart = [_product(item, store["url"]) for item in context.get("cart") or []]
    refill = _product(context["refill"], store["url"]) if context.get("refill") else None
    trigger = _cleaned({"kind": None, **dict(context.get("trigger") or {})})
    for key in [k for k in trigger if isinstance(k, str) and k.endswith("_url")]:
        url = safe_url(trigger[key])
        if url is None:
            del trigger[key]
        else:
            trigger[key] = url
    offer = _cleaned(dict(context.get("offer") or {}))
    shown = [*cart, *([refill] if refill else []), *products]
    topic = context.get("topic")
    if topic is None:
        known = [p["product_type"] for p in shown if p["product_type"] is not None]
        topic = topic_of(known) if known else "coffee"
    picks = context.get("picks")
    if picks is None:
        picks = picks_kind(p["kind"] or "history" for p in products)
    base = {k: _clean_value(v) for k, v in context.items() if k not in _CONTRACT}
    return {
        "campaign": None,
        "variant": None,
        **base,
        "store": store,
        "customer": customer,
        "products": products,
        "cart": cart,
        "refill": refill,
        "trigger": trigger,
        "offer": offer if offer.get("code") else None,
        "subject": clean_text(str(context["subject"])).strip() or None if context.get("subject") else None,
        "topic": clean_text(str(topic)),
        "picks": clean_text(str(picks)),
        "taste_known": bool(context.get("taste_known", picks != "popular")),
        **extra,
    }


def _product(item: Mapping[str, Any], store_url: str) -> dict[str, Any]:
    """One product of the contract: every key present, strings clean, links safe (else the store's)."""
    product = _cleaned({**dict.fromkeys(_PRODUCT_KEYS), "title": "", "url": "", **dict(item)})
    product["image_url"] = safe_url(product["image_url"])
    product["url"] = safe_url(product["url"]) or store_url
    if product["topic"] is None:
        product["topic"] = topic_of([product["product_type"]])
    return product


def _cleaned(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _clean_value(value) for key, value in values.items()}


def _clean_value(value: Any) -> Any:
    """Strings cleaned (``clean_text``), containers cleaned all the way down, anything else as it is."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {key: _clean_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_value(item) for item in value]
    return value


class _TemplateFolder:
    """Reads template files from one folder, refusing names that would escape it."""

    def __init__(self, root: Path, kind: str, suffix: str) -> None:
        self.root = root.resolve()
        self.kind = kind
        self.suffix = suffix

    def path(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
            raise TemplateNotFoundError(str(name), "a template name is letters, digits, '_' or '-'")
        path = self.root / self.kind / f"{name}{self.suffix}"
        if not path.is_file():
            raise TemplateNotFoundError(name, f"no file {self.kind}/{name}{self.suffix} in {self.root}")
        return path

    def names(self) -> list[str]:
        return sorted(p.name.removesuffix(self.suffix) for p in (self.root / self.kind).glob(f"*{self.suffix}"))

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.root))


class EmailRenderer:
    """Renders ``templates/email/<name>.mjml`` for one recipient; compiles each template version once."""

    def __init__(self, templates_dir: Path | str | None = None, *, strict: bool = False) -> None:
        self._folder = _TemplateFolder(Path(templates_dir or TEMPLATES_DIR), "email", ".mjml")
        self.strict = strict
        self._current: dict[str, tuple[tuple[tuple[str, int, int], ...], CompiledEmail]] = {}
        self._checked_at: dict[str, float] = {}

    def template_names(self) -> list[str]:
        """Every email template this renderer can use."""
        return self._folder.names()

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Subject, HTML and text for one recipient. ``context`` follows ``template_context``'s contract."""
        compiled = self.compile(name)
        values = template_context(context)
        try:
            subject = header_text(compiled.subject.render(values))
            html_part = compiled.html.render(values)
            text_part = tidy_text(compiled.text.render(values))
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(name, f"{type(exc).__name__}: {exc}") from exc
        return RenderedEmail(subject=subject, html=html_part, text=text_part)

    def compile(self, name: str) -> CompiledEmail:
        """The compiled template for the current content of its files (cached by their SHA-256).

        A ``stat`` of the template and its partials (at most once a second) tells whether anything changed;
        only then are the files read and hashed again.
        """
        current = self._current.get(name)
        now = time.monotonic()
        if current is not None:
            if now - self._checked_at.get(name, 0.0) < _RECHECK_SECONDS:
                return current[1]
            if _signature(self._folder.root, current[0]) == current[0]:
                self._checked_at[name] = now
                return current[1]
        path = self._folder.path(name)
        sources = self._expand(name, path)
        signature = _signature(self._folder.root, tuple((file, 0, 0) for file in sources))
        digest = hashlib.sha256("\0".join(f"{k}\0{v}" for k, v in sources.items()).encode()).hexdigest()
        with _COMPILE_LOCK:
            compiled = _COMPILED.get((digest, self.strict))
            if compiled is None or compiled.name != name:
                compiled = self._compile(name, sources, digest)
                _COMPILED[(digest, self.strict)] = compiled
        self._current[name] = (signature, compiled)
        self._checked_at[name] = now
        return compiled

    def _expand(self, name: str, path: Path) -> dict[str, str]:
        """Source of the template and every partial it includes, by relative file name, template first."""
        sources: dict[str, str] = {}

        def visit(file: Path, depth: int) -> None:
            relative = self._folder.relative(file)
            if depth > _MAX_INCLUDE_DEPTH:
                raise TemplateError(name, f"includes nest deeper than {_MAX_INCLUDE_DEPTH}", file=relative)
            text = file.read_text(encoding="utf-8")
            sources[relative] = text
            for match in _INCLUDE.finditer(text):
                visit(self._include_path(name, file, match.group(1), text, match.start()), depth + 1)

        visit(path, 0)
        return sources

    def _include_path(self, name: str, file: Path, target: str, text: str, offset: int) -> Path:
        included = (file.parent / target).resolve()
        if not included.is_file() or not included.is_relative_to(self._folder.root):
            raise TemplateError(
                name,
                f"mj-include path {target!r} is not a file inside the templates folder",
                file=self._folder.relative(file),
                line=text.count("\n", 0, offset) + 1,
            )
        return included

    def _inline(self, name: str, relative: str, sources: dict[str, str]) -> str:
        """The file's source with every ``mj-include`` replaced by the included file, recursively."""
        file = self._folder.root / relative
        text = sources[relative]

        def replace(match: re.Match[str]) -> str:
            included = self._include_path(name, file, match.group(1), text, match.start())
            return self._inline(name, self._folder.relative(included), sources)

        return _INCLUDE.sub(replace, text)

    def _compile(self, name: str, sources: dict[str, str], digest: str) -> CompiledEmail:
        for file, text in sources.items():
            _check_jinja(name, file, text)
        main = next(iter(sources))
        mjml_source = self._inline(name, main, sources)
        try:
            result = mjml_to_html(mjml_source)
        except Exception as exc:  # the mjml package raises ValueError/AssertionError with terse text
            raise TemplateError(name, f"MJML could not compile it: {exc}", file=main) from exc
        if result.errors:
            raise TemplateError(name, f"MJML errors: {'; '.join(result.errors)}", file=main)
        page = _squeeze(result.html)
        _check_jinja_survived(name, main, page)
        html_env, text_env = (_STRICT_HTML_ENV, _STRICT_TEXT_ENV) if self.strict else (_HTML_ENV, _TEXT_ENV)
        return CompiledEmail(
            name=name,
            digest=digest,
            subject=_from_string(text_env, name, main, _subject_source(name, main, mjml_source)),
            html=_from_string(html_env, name, main, page),
            text=_from_string(text_env, name, main, html_to_text_template(page)),
        )


def _signature(root: Path, files: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, int, int], ...]:
    """(file, mtime_ns, size) for each file now; a vanished file gets (-1, -1) so the memo is dropped."""
    signature = []
    for relative, _mtime, _size in files:
        try:
            stat = (root / relative).stat()
            signature.append((relative, stat.st_mtime_ns, stat.st_size))
        except OSError:
            signature.append((relative, -1, -1))
    return tuple(signature)


class CardRenderer:
    """Renders ``templates/inapp/<name>.json.j2`` into a dict; every ``{{ … }}`` is emitted as JSON."""

    def __init__(self, templates_dir: Path | str | None = None) -> None:
        self._folder = _TemplateFolder(Path(templates_dir or TEMPLATES_DIR), "inapp", ".json.j2")
        self._cache: dict[str, tuple[str, jinja2.Template]] = {}

    def template_names(self) -> list[str]:
        """Every in-app template this renderer can use."""
        return self._folder.names()

    def render(self, name: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """The card as a dict (not yet validated: the channel adds ids and validates)."""
        path = self._folder.path(name)
        file = self._folder.relative(path)
        source = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(source.encode()).hexdigest()
        cached = self._cache.get(name)
        if cached is None or cached[0] != digest:
            cached = (digest, _from_string(_CARD_ENV, name, file, source))
            self._cache[name] = cached
        try:
            card = json.loads(cached[1].render(template_context(context)))
        except jinja2.TemplateError as exc:
            raise TemplateRenderError(name, f"{type(exc).__name__}: {exc}", file=file) from exc
        except json.JSONDecodeError as exc:
            reason = f"did not render valid JSON: {exc.msg}"
            raise TemplateRenderError(name, reason, file=file, line=exc.lineno) from exc
        if not isinstance(card, dict):
            raise TemplateRenderError(name, "must render a JSON object", file=file)
        return card


def _check_jinja(name: str, file: str, text: str) -> None:
    """Parse with Jinja so a syntax error points at the line a human edits, not at compiled HTML."""
    try:
        _HTML_ENV.parse(text, name=file)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(name, f"Jinja syntax error: {exc.message}", file=file, line=exc.lineno) from exc


def _check_jinja_survived(name: str, file: str, page: str) -> None:
    """MJML must not have HTML-escaped anything inside ``{{ }}``; that happens with ``&``, ``<``, ``>`` or ``"``."""
    for match in _JINJA.finditer(page):
        if _ESCAPED_IN_JINJA.search(match.group(0)):
            raise TemplateError(
                name,
                f"MJML escaped the Jinja expression {match.group(0)!r}: avoid &, <, > and double quotes inside "
                "{{ }} and {% %} (use single quotes, 'and'/'or', filters)",
                file=file,
            )


def _from_string(env: jinja2.Environment, name: str, file: str, source: str) -> jinja2.Template:
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(name, f"Jinja syntax error: {exc.message}", file=file, line=exc.lineno) from exc


def _subject_source(name: str, file: str, mjml_source: str) -> str:
    """The ``<mj-title>`` text as a plain-text Jinja template (HTML entities decoded)."""
    match = _TITLE.search(mjml_source)
    if match is None or not match.group(1).strip():
        raise TemplateError(name, "has no <mj-title>: the subject line comes from it", file=file)
    return html.unescape(" ".join(match.group(1).split()))


def _squeeze(page: str) -> str:
    """Drop indentation and blank lines of compiled HTML: ~25% fewer bytes to render, encode and send."""
    return "\n".join(line.strip() for line in page.splitlines() if line.strip())


def html_to_text_template(page: str) -> str:
    """The plain-text twin of a Jinja-bearing HTML page, itself a Jinja template.

    Jinja markup is swapped for inert placeholders while html2text runs (it would otherwise escape or re-wrap
    it), then put back. The preheader (a hidden div) and images are left out.
    """
    markup: list[str] = []

    def hide(match: re.Match[str]) -> str:
        markup.append(match.group(0))
        return f"JINJAPLACEHOLDER{len(markup) - 1}X"

    protected = _JINJA.sub(hide, _strip_preheader(page))
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.protect_links = True
    converter.unicode_snob = True
    text = _plain_links(converter.handle(protected))
    text = re.sub(r"JINJAPLACEHOLDER(\d+)X", lambda m: markup[int(m.group(1))], text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _plain_links(text: str) -> str:
    """Markdown links → ``label: url`` (or just the url); image-only links (an empty label) disappear."""

    def plain(match: re.Match[str]) -> str:
        label = " ".join(match.group(1).split()).rstrip(" →")
        url = match.group(2)
        return f"{label}: {url}" if label and label != url else ("" if not label else url)

    return re.sub(r"\[([^\]]*)\]\(<?([^)>\s]*)>?\)", plain, text)


def tidy_text(text: str) -> str:
    """A rendered text part without trailing spaces or runs of blank lines."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _strip_preheader(page: str) -> str:
    return re.sub(r'<div style="display:none;font-size:1px;[^"]*">.*?</div>', "", page, count=1, flags=re.DOTALL)
