"""Tracked links: every http(s) link of an email goes through ``{links_url}/c/TOKEN`` (``omnicast serve``), which
records the click and redirects to the target with UTM parameters.

``track_links`` rewrites the ``<a href>`` links of the HTML part and the bare URLs of the text part; ``click_url``
makes one tracked URL from a message and a target (the token, ``channels.tokens``, holds the customer, the message's
ledger key, campaign, variant and the target: opaque and authenticated, so nobody can make our domain redirect
elsewhere). The email channel hooks them in after rendering::

    html, text = track_links(rendered.html, rendered.text,
                             lambda url: click_url(public_url, signer, message, url),
                             skip=own_links(public_url))

Images (``src``), ``mailto:``/``tel:`` links, anchors and relative links stay as they are, and so does every URL
``skip`` names (the unsubscribe link: mailbox providers and humans must see it plainly, and a click on it must not
count as interest). Tokens are deterministic, so a retried message is still byte-identical.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable

from channels.tokens import MAX_CLICK_URL_CHARS, ClickClaim, TokenSigner
from models.message import OutboundMessage

_ATTRIBUTE = r"""\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
_A_TAG = re.compile(rf"(<[aA])\b((?:{_ATTRIBUTE})*)(\s*/?>)")  # no IGNORECASE: it would defeat re's prefix scan
_HREF = re.compile(r"""(\shref\s*=\s*)(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.IGNORECASE)
_TEXT_URL = re.compile(r"""[hH][tT][tT][pP][sS]?://[^\s<>"`]+""")
_TRAILING = ".,;:!?'"
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def click_url(links_url: str, signer: TokenSigner, message: OutboundMessage, target: str) -> str:
    """The tracked URL for ``target`` in ``message``: ``{links_url}/c/TOKEN``.

    A target longer than a click token may carry (2,048 characters, the longest URL a template may hold) is
    returned unchanged: the link works, untracked.
    """
    if len(target) > MAX_CLICK_URL_CHARS:
        return target
    claim = ClickClaim(
        customer_id=message.customer_id,
        occurrence_key=message.occurrence_key,
        channel=message.channel,
        campaign=message.campaign,
        variant=message.variant,
        url=target,
    )
    return f"{links_url.rstrip('/')}/c/{signer.sign_click(claim)}"


def own_links(links_url: str) -> Callable[[str], bool]:
    """``skip`` for :func:`track_links`: our own unsubscribe and tracked links are left alone."""
    base = links_url.rstrip("/")
    prefixes = (f"{base}/u/", f"{base}/c/")
    return lambda url: url.startswith(prefixes)


def track_links(
    html: str, text: str, make_url: Callable[[str], str], *, skip: Callable[[str], bool]
) -> tuple[str, str]:
    """``html`` and ``text`` with every http(s) link (``<a href>`` in the HTML, bare URLs in the text) replaced by
    ``make_url(target)``, except the targets ``skip`` accepts. ``make_url`` runs once per distinct target."""
    made: dict[str, str] = {}

    def tracked(url: str) -> str | None:
        if not _is_web_url(url) or skip(url):
            return None
        if url not in made:
            made[url] = make_url(url)
        return made[url]

    def replace_href(match: re.Match[str]) -> str:
        raw = next(value for value in match.groups()[1:] if value is not None)
        new = tracked(html_lib.unescape(raw).strip())
        if new is None:
            return match.group(0)
        return f'{match.group(1)}"{html_lib.escape(new, quote=True)}"'

    def replace_tag(match: re.Match[str]) -> str:
        attributes = _HREF.sub(replace_href, match.group(2), count=1)
        return f"{match.group(1)}{attributes}{match.group(3)}"

    def replace_text(match: re.Match[str]) -> str:
        url, tail = _split_trailing(match.group(0))
        new = tracked(url)
        return match.group(0) if new is None else new + tail

    return _A_TAG.sub(replace_tag, html), _TEXT_URL.sub(replace_text, text)


def _is_web_url(url: str) -> bool:
    lowered = url[:8].lower()
    return lowered.startswith(("http://", "https://")) and len(url) > len("http://")


def _split_trailing(candidate: str) -> tuple[str, str]:
    """A URL found in running text, without the punctuation that ends the sentence around it (``see https://x.y/a.``,
    ``(https://x.y/a)``): trailing ``.,;:!?'`` and closing brackets that open nowhere in the URL."""
    end = len(candidate)
    while end > 0:
        last = candidate[end - 1]
        unbalanced = last in _CLOSERS and candidate.count(_CLOSERS[last], 0, end) < candidate.count(last, 0, end)
        if last not in _TRAILING and not unbalanced:
            break
        end -= 1
    return candidate[:end], candidate[end:]
