"""Reading the Shopify exports: what a store owner's files turn into, and what gets quarantined."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from sources.shopify import read_customers, read_orders, read_products
from sources.validate import Intake, SourceFileError, plainly_valid_email

STORE = Path(__file__).resolve().parents[1] / "data" / "sources" / "store"
BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
SKUS = {"BEAN-ETH-001", "BEAN-COL-002", "TEA-SEN-001", "FLT-V60-100", "GEAR-V60-01", "GIFT-BOX-01"}


def store_copy(tmp_path: Path) -> Path:
    """A private copy of the fixture store the test may dirty."""
    target = tmp_path / "store"
    shutil.copytree(STORE, target)
    return target


def append_lines(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8", newline="") as handle:
        for line in lines:
            handle.write(line + "\n")


def edit_line(path: Path, start: str, change) -> None:  # type: ignore[no-untyped-def]
    """Rewrite the one line of ``path`` that starts with ``start``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = [change(line) if line.startswith(start) else line for line in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def row_text(path: Path, **changes: str) -> str:
    """The file's first data row with some columns changed, as one CSV line."""
    with path.open(newline="", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    row.update(changes)
    return ",".join(_quote(value) for value in row.values())


def _quote(value: str) -> str:
    return f'"{value}"' if any(ch in value for ch in ',"\n') else value


def orders(path: Path) -> tuple[Intake, object]:
    intake = Intake("orders", path.name)
    return intake, read_orders(path, intake, SKUS)


# --- products -----------------------------------------------------------------------------------------


def test_products_keep_flavour_notes_pipe_separated_and_flag_consumables() -> None:
    intake = Intake("products", "products_export.csv")
    products = read_products(STORE / "products_export.csv", intake).set_index("sku")
    assert products.loc["BEAN-ETH-001", "flavour_notes"] == "chocolate|cherry|almond"
    assert products.loc["BEAN-ETH-001", "replenish_days"] == 30
    assert products.loc["FLT-V60-100", "consumable"]
    assert not products.loc["GEAR-V60-01", "consumable"]
    assert not products.loc["GIFT-BOX-01", "active"]
    assert intake.count(len(products)).rows_loaded == 6


def test_second_variant_row_inherits_product_fields_of_its_handle(tmp_path: Path) -> None:
    store = store_copy(tmp_path)
    path = store / "products_export.csv"
    append_lines(
        path, row_text(path, Title="", Type="", Status="", **{"Variant SKU": "BEAN-ETH-1KG", "Variant Price": "49.00"})
    )
    products = read_products(path, Intake("products", path.name)).set_index("sku")
    assert products.loc["BEAN-ETH-1KG", "title"] == "Ethiopia Yirgacheffe"
    assert products.loc["BEAN-ETH-1KG", "product_type"] == "Coffee Beans"
    assert products.loc["BEAN-ETH-1KG", "price"] == 49.0


def test_product_with_unparseable_price_is_quarantined(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "products_export.csv"
    append_lines(path, row_text(path, **{"Variant SKU": "BEAN-NEW-009", "Variant Price": "14,50"}))
    intake = Intake("products", path.name)
    products = read_products(path, intake)
    quarantined = intake.quarantine()
    assert list(quarantined["column"]) == ["Variant Price"]
    assert list(quarantined["row_number"]) == [7]
    assert "BEAN-NEW-009" not in set(products["sku"])


# --- whole-file problems ------------------------------------------------------------------------------


def test_missing_column_names_the_file_and_column() -> None:
    with pytest.raises(SourceFileError) as error:
        orders(BAD / "orders_export_without_sku.csv")
    message = str(error.value)
    assert "orders_export_without_sku.csv" in message
    assert "missing column 'Lineitem sku'" in message
    assert "Orders → Export" in message


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(SourceFileError, match=r"customers_export.csv: file not found at .*Customers → Export"):
        read_customers(tmp_path / "customers_export.csv", Intake("customers", "customers_export.csv"), "US")


def test_spreadsheet_saved_as_csv_is_rejected_as_not_csv() -> None:
    with pytest.raises(SourceFileError, match=r"customers_export.xlsx.csv: not UTF-8 text"):
        read_customers(BAD / "customers_export.xlsx.csv", Intake("customers", "x"), "US")


def test_latin1_export_is_rejected_with_how_to_fix() -> None:
    with pytest.raises(SourceFileError, match=r"not UTF-8 .*Customers → Export"):
        read_customers(BAD / "customers_export_latin1.csv", Intake("customers", "x"), "US")


def test_empty_file_is_rejected() -> None:
    with pytest.raises(SourceFileError, match=r"empty.csv: the file is empty"):
        read_products(BAD / "empty.csv", Intake("products", "empty.csv"))


# --- customers ----------------------------------------------------------------------------------------


def test_customer_id_and_phone_lose_the_shopify_apostrophe() -> None:
    customers = read_customers(STORE / "customers_export.csv", Intake("customers", "c"), "US").set_index("external_id")
    assert customers.loc["7012345678901", "phone"] == "+14155550123"
    assert customers.loc["7012345678903", "email"] == "jane.doe@example.com"
    assert customers.loc["7012345678901", "accepts_email"] is True


def test_excel_style_export_with_bom_and_crlf_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "customers_export.csv"
    text = (STORE / "customers_export.csv").read_text(encoding="utf-8")
    path.write_bytes(("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8"))
    plain = read_customers(STORE / "customers_export.csv", Intake("customers", "c"), "US")
    excel = read_customers(path, Intake("customers", "c"), "US")
    assert excel.drop(columns="_row").equals(plain.drop(columns="_row"))


def test_dirty_customers_rows_without_id_are_quarantined_bad_cells_set_aside() -> None:
    intake = Intake("customers", "customers_dirty.csv")
    customers = read_customers(BAD / "customers_dirty.csv", intake, "US")
    quarantined = intake.quarantine().set_index("row_number")
    assert quarantined.loc[3, ["column", "scope"]].tolist() == ["Customer ID", "row"]
    assert quarantined.loc[4, "reason"].startswith("malformed row: 5 fields")
    assert quarantined.loc[2, ["column", "scope"]].tolist() == ["Email", "field"]  # jane.doe@@example: loaded
    assert quarantined.loc[5, ["column", "scope"]].tolist() == ["Total Spent", "field"]
    assert json.loads(quarantined.loc[2, "raw"])["Email"] == "jane.doe@@example"
    assert list(customers["external_id"]) == ["7012345678901", "7012345678902", "7012345678905", "7012345678906"]
    assert customers.set_index("external_id").loc["7012345678902", "email"] is None
    count = intake.count(len(customers))
    assert (count.rows_read, count.rows_quarantined, count.duplicates_skipped, count.fields_quarantined) == (7, 2, 1, 2)


def test_opt_out_with_a_malformed_phone_is_loaded_without_the_phone(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "customers_export.csv"
    edit_line(path, "'7012345678902,John", lambda line: line.replace("'+14165550188", "'+1 416 555"))
    intake = Intake("customers", path.name)
    john = read_customers(path, intake, "US").set_index("external_id").loc["7012345678902"]
    assert john["accepts_email"] is False and john["phone"] is None
    entry = intake.quarantine().iloc[0]
    assert (entry["column"], entry["scope"], entry["row_number"]) == ("Phone", "field", 2)
    assert intake.rows_quarantined == 0


def test_repeated_customer_id_keeps_its_denial(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "customers_export.csv"
    append_lines(
        path, "'7012345678901,Jane,Doe,jane.doe@example.com,no,,01 Main St,,San Francisco,CA,US,94103,,,no,,,,,"
    )
    intake = Intake("customers", path.name)
    customers = read_customers(path, intake, "US")
    assert intake.quarantine().iloc[0]["reason"] == "Customer ID already used on an earlier row"
    denials = intake.kept_denials()
    assert set(zip(denials["external_id"], denials["channel"], strict=True)) == {
        ("7012345678901", "email"),
        ("7012345678901", "sms"),
    }
    assert len(customers) == 5


# --- orders -------------------------------------------------------------------------------------------


def test_order_level_fields_come_from_the_first_line_row() -> None:
    _, result = orders(STORE / "orders_export.csv")
    order = result.orders.set_index("external_id").loc["#1001"]
    assert order["total"] == pytest.approx(33.62)
    assert order["currency"] == "USD"
    assert order["financial_status"] == "paid"
    lines = result.lines[result.lines["order_external_id"] == "#1001"]
    assert list(lines["line_number"]) == [1, 2]
    assert list(lines["quantity"]) == [1, 2]


def test_order_timestamps_with_offsets_become_aware_utc() -> None:
    _, result = orders(STORE / "orders_export.csv")
    created = result.orders.set_index("external_id").loc["#1001", "created_at"]
    assert created.isoformat() == "2026-10-02T16:15:00+00:00"


def test_order_emails_are_normalized_for_linking() -> None:
    _, result = orders(STORE / "orders_export.csv")
    assert result.orders.set_index("external_id").loc["#1004", "email"] == "jane.doe@example.com"


def test_dirty_orders_are_quarantined_duplicates_skipped_and_rows_stay_aligned() -> None:
    intake, result = orders(BAD / "orders_dirty.csv")
    quarantined = intake.quarantine()
    assert dict(zip(quarantined["row_number"], quarantined["column"], strict=True)) == {
        3: "Lineitem sku",  # unknown SKU
        4: None,  # wrong number of fields
        5: "Name",
        6: "Lineitem sku",  # missing
        7: None,  # too many fields
        8: "Lineitem quantity",
    }
    assert "unknown SKU 'BEAN-GONE-404'" in set(quarantined["reason"])
    assert intake.duplicates_skipped == 1
    assert list(result.lines["_row"]) == [1, 2, 10]  # row 9 duplicates row 2
    assert set(result.orders["external_id"]) == {"#2001", "#2002", "#2003"}  # #2002 only lost its line
    count = intake.count(len(result.lines))
    assert count.rows_read == 10 and count.reconciles


def test_order_whose_first_row_is_quarantined_keeps_its_other_lines(tmp_path: Path) -> None:
    path = store_copy(tmp_path) / "orders_export.csv"
    text = path.read_text(encoding="utf-8").splitlines()
    text[1] = text[1].replace("BEAN-ETH-001", "BEAN-GONE-404")
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    intake, result = orders(path)
    order = result.orders.set_index("external_id").loc["#1001"]
    assert order["total"] == pytest.approx(33.62)  # order-level fields survive a bad line
    assert list(result.lines[result.lines["order_external_id"] == "#1001"]["line_number"]) == [2]


# --- email fast path agrees with the library ----------------------------------------------------------

_atoms = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_+-", min_size=1, max_size=12)
_labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_emails = st.builds(
    lambda local, labels, tld: ".".join(local) + "@" + ".".join([*labels, tld]),
    st.lists(_atoms, min_size=1, max_size=3),
    st.lists(_labels, min_size=1, max_size=3),
    st.sampled_from(["com", "de", "example", "test", "local", "co", "io", "invalid", "museum"]),
)


@settings(max_examples=150, deadline=None)
@given(_emails)
def test_plain_email_fast_path_only_accepts_what_email_validator_accepts(address: str) -> None:
    if plainly_valid_email(address):
        try:
            assert validate_email(address, check_deliverability=False).normalized == address
        except EmailNotValidError as exc:  # pragma: no cover - this is the failure being looked for
            pytest.fail(f"fast path accepted {address!r} but email-validator says: {exc}")
