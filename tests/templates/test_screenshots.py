"""Every email template, for several planned customers, opened in headless Chromium: never a blank page.

Each email is written as an HTML file; one page lays them out side by side in iframes of the reading width (640 px,
a desktop reading pane, and 375 px, a phone) and Chromium (Debian's ``chromium``) takes one screenshot of it per
width, cut back into one picture per email. An email whose picture is almost all one colour, or has next to no dark
(text) pixels, is blank: the template broke in a way no string check sees (an unclosed tag that swallows the body,
CSS that hides it, MJML output a browser can't lay out). Two browser starts keep the test fast.

Without ``chromium`` on the PATH the test is skipped locally (``apt-get install -y chromium``) but fails under CI
(``CI=true``). ``OMNICAST_SCREENSHOT_DIR`` keeps the pages and the per-email screenshots there for a human to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from channels.render import EmailRenderer
from tests.templates.store import PlannedStore

UNSUBSCRIBE = "https://beanandleaf.example/u/TOKEN"
PER_TEMPLATE = 2
WIDTHS = (640, 375)
CELL_HEIGHT = 1800
COLUMNS = 5
MOST_COMMON_COLOUR_MAX = 0.92  # a real email: header, body, footer and page background in different colours
DARK_PIXELS_MIN = 0.002  # text


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "chromium is not installed (apt-get install -y chromium): the templates' browser rendering is untested"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + "; CI must run it", pytrace=False)
    pytest.skip(reason)


def contact_sheet(folder: Path, pages: list[Path], width: int) -> tuple[Path, int, int]:
    """A page showing every email in its own iframe of ``width``, on a grid; returns it and its size."""
    rows = (len(pages) + COLUMNS - 1) // COLUMNS
    frames = "".join(
        f'<iframe src="{page.name}" style="position:absolute;left:{(n % COLUMNS) * width}px;'
        f'top:{(n // COLUMNS) * CELL_HEIGHT}px;width:{width}px;height:{CELL_HEIGHT}px;border:0"></iframe>'
        for n, page in enumerate(pages)
    )
    sheet = folder / f"sheet-{width}.html"
    sheet.write_text(f"<!doctype html><html><body style='margin:0;background:#fff'>{frames}</body></html>")
    return sheet, COLUMNS * width, rows * CELL_HEIGHT


def screenshot(browser: str, page: Path, size: tuple[int, int]) -> Path:
    shot = page.with_suffix(".png")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=10000", "--allow-file-access-from-files",
         f"file://{page}"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    return shot


def blankness(image: object) -> tuple[float, float]:
    """(share of the most common colour, share of dark pixels) of a PIL image."""
    rgb = image.convert("RGB")  # type: ignore[attr-defined]
    pixels = rgb.width * rgb.height
    colours = rgb.getcolors(maxcolors=pixels) or []
    top = max(count for count, _ in colours)
    dark = sum(count for count, (r, g, b) in colours if 0.299 * r + 0.587 * g + 0.114 * b < 110)
    return top / pixels, dark / pixels


def test_every_template_renders_a_real_page_in_chromium(planned: PlannedStore, tmp_path: Path) -> None:
    browser = chromium()
    pytest.importorskip("PIL", reason="Pillow reads the screenshots (pip install pillow)")
    from PIL import Image

    folder = Path(os.environ.get("OMNICAST_SCREENSHOT_DIR") or tmp_path).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    renderer = EmailRenderer(strict=True)
    pages: list[Path] = []
    for template in renderer.template_names():
        customers = list(dict.fromkeys(m.customer_id for m in planned.emails() if m.template == template))
        chosen = customers[:: max(1, len(customers) // PER_TEMPLATE)][:PER_TEMPLATE]
        assert chosen, f"planning made no {template} email"
        for customer in chosen:
            message = next(m for m in planned.emails() if m.template == template and m.customer_id == customer)
            page = folder / f"{template}-customer-{customer}.html"
            page.write_text(renderer.render(template, {**message.context, "unsubscribe_url": UNSUBSCRIBE}).html)
            pages.append(page)
    sheets = [(contact_sheet(folder, pages, width), width) for width in WIDTHS]
    with ThreadPoolExecutor(max_workers=len(sheets)) as pool:
        shots = list(pool.map(lambda job: (screenshot(browser, job[0][0], job[0][1:]), job[1]), sheets))
    blank = []
    for shot, width in shots:
        with Image.open(shot) as sheet:
            for n, page in enumerate(pages):
                left, top = (n % COLUMNS) * width, (n // COLUMNS) * CELL_HEIGHT
                cell = sheet.crop((left, top, left + width, top + CELL_HEIGHT))
                cell.save(folder / f"{page.stem}-{width}.png")
                colour, dark = blankness(cell)
                if colour > MOST_COMMON_COLOUR_MAX or dark < DARK_PIXELS_MIN:
                    blank.append(f"{page.stem} at {width} px: {colour:.1%} one colour, {dark:.2%} dark pixels")
    assert not blank, "blank pages:\n" + "\n".join(blank)


def test_the_blank_page_detector_tells_a_blank_page_from_an_email() -> None:
    pytest.importorskip("PIL", reason="Pillow reads the screenshots (pip install pillow)")
    from PIL import Image, ImageDraw

    white = Image.new("RGB", (640, CELL_HEIGHT), "#ffffff")
    colour, dark = blankness(white)
    assert colour > MOST_COMMON_COLOUR_MAX and dark < DARK_PIXELS_MIN
    shell = Image.new("RGB", (640, CELL_HEIGHT), "#f4ede4")  # a page background with a header bar only
    ImageDraw.Draw(shell).rectangle((20, 0, 620, 110), fill="#2b1d14")
    assert blankness(shell)[0] > MOST_COMMON_COLOUR_MAX
    email = shell.copy()
    draw = ImageDraw.Draw(email)
    draw.rectangle((20, 110, 620, 1100), fill="#fffdf9")
    for y in range(150, 1050, 28):
        draw.rectangle((50, y, 560, y + 14), fill="#3b2a20")  # lines of text
    colour, dark = blankness(email)
    assert colour < MOST_COMMON_COLOUR_MAX and dark > DARK_PIXELS_MIN
