"""import_events for every format: counts match the files, skips are counted with reasons, re-import is a no-op."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from consumers.countries import country_code
from consumers.models import Consumer, Event, EventType, Product
from privacy.pseudonyms import pseudonymise


def import_events(*args: str) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_events", *args, "--json", stdout=out, stderr=err)
    return json.loads(out.getvalue()), err.getvalue()


# ------------------------------------------------------------------ UCI Online Retail (real data)


@pytest.mark.shared_data
def test_online_retail_loads_every_row_with_a_customer_and_counts_the_rest(shared_data, db):
    folder = shared_data / "online-retail"
    if not folder.is_dir():
        pytest.skip("online-retail data set not present")
    # The expectations, computed independently from the file with the csv module.
    read = with_customer = cancellations = 0
    customers: dict[str, str] = {}
    skus = set()
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                read += 1
                customer = row["CustomerID"].strip()
                if not customer:
                    continue
                with_customer += 1
                cancellations += row["InvoiceNo"].startswith("C") or int(row["Quantity"]) < 0
                customers[customer] = row["Country"].strip()
                skus.add(row["StockCode"].strip())

    summary, progress = import_events("--format", "online_retail", str(folder))

    assert summary["read"] == read
    assert summary["sent"] == summary["accepted"] == with_customer
    assert summary["skipped_by_reason"] == {"missing CustomerID": read - with_customer}
    assert summary["rejected"] == 0 and summary["duplicates"] == 0
    assert "100%" in progress  # the progress bar ran to the end on stderr
    events = Event.objects.filter(merchant__slug="online-retail")
    assert events.count() == with_customer
    assert events.filter(event_type=EventType.CANCEL).count() == cancellations
    assert events.filter(event_type=EventType.PURCHASE).count() == with_customer - cancellations
    assert not events.filter(quantity__lt=1).exists()
    assert Consumer.objects.count() == len(customers)
    assert Product.objects.filter(merchant__slug="online-retail").count() == len(skus)

    # Profiles: each customer's country, where the file's name is a country (not "Channel Islands").
    expected = Counter(country_code(c) for c in customers.values() if country_code(c))
    assert Counter(Consumer.objects.exclude(country="").values_list("country", flat=True)) == expected
    assert summary["profiles"]["accepted"] == sum(expected.values())
    unrecognised = Counter(f"country not recognised: {c}" for c in customers.values() if not country_code(c))
    assert summary["profiles"]["skipped_by_reason"] == dict(unrecognised)
    assert Consumer.objects.filter(pseudonym=pseudonymise("online_retail:17850"), country="GB").exists()

    again, _ = import_events("--format", "online_retail", str(folder), "--no-progress")
    assert (again["accepted"], again["duplicates"]) == (0, with_customer)
    assert Event.objects.count() == with_customer


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


RETAIL_HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
    "TotalPrice",
]


def test_online_retail_format_rules(db, tmp_path):
    path = write_csv(
        tmp_path / "retail.csv",
        RETAIL_HEADER,
        [
            ["536365", "85123A", "WHITE HANGING HEART", "6", "12/1/10 8:26", "2.55", "17850", "United Kingdom", ""],
            ["536365", "85123A", "WHITE HANGING HEART", "6", "12/1/10 8:26", "2.55", "17850", "United Kingdom", ""],
            ["C536379", "D", "Discount", "-1", "12/1/2010 9:41", "27.50", "14527.0", "EIRE", ""],
            ["536380", "22961", "JAM MAKING SET", "2", "12/1/10 9:41", "1.45", "", "United Kingdom", ""],
            ["536381", "22139", "RETROSPOT TEA SET", "0", "12/1/10 9:41", "4.95", "15311", "Channel Islands", ""],
            ["536382", "22139", "RETROSPOT TEA SET", "x", "12/1/10 9:41", "4.95", "15311", "Channel Islands", ""],
            ["536383", "22140", "", "1", "12/1/10 9:41", "-4.95", "15311", "Channel Islands", ""],
        ],
    )
    summary, _ = import_events("--format", "online_retail", str(path), "--merchant", "uk-shop", "--no-progress")
    assert summary["skipped_by_reason"] == {
        "missing CustomerID": 1,
        "zero Quantity": 1,
        "unreadable Quantity or InvoiceDate": 1,
    }
    # The same invoice line twice is two events (the row position is part of the event id).
    assert (summary["sent"], summary["accepted"], summary["rejected"]) == (4, 3, 1)
    assert summary["rejected_by_reason"] == {"price: must not be negative": 1}
    cancel = Event.objects.get(event_type=EventType.CANCEL)
    assert (cancel.quantity, str(cancel.price), cancel.consumer.pseudonym) == (
        1,
        "27.50",
        pseudonymise("online_retail:14527"),
    )
    assert cancel.consumer.country == "IE"
    assert Product.objects.get(sku="85123A").title == "WHITE HANGING HEART"


def test_missing_columns_are_named(db, tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["InvoiceNo", "StockCode"], [["1", "2"]])
    with pytest.raises(CommandError, match="lacks the column.*Quantity"):
        import_events("--format", "online_retail", str(path), "--no-progress")
    with pytest.raises(CommandError, match="does not exist"):
        import_events("--format", "csv", str(tmp_path / "nope.csv"))


# ------------------------------------------------------------------ Taobao user behaviour


def test_taobao_behaviours_map_to_event_types(db, tmp_path):
    path = tmp_path / "UserBehavior.csv"
    path.write_text(
        "user_id,item_id,category_id,behavior_type,timestamp\n"
        "1,2268318,2520377,pv,1511544070\n"
        "1,2333346,2520771,pv,1511561733\n"
        "1,2576651,149192,buy,1511572885\n"
        "2,3830808,4181361,cart,1511593493\n"
        "2,4365585,2520377,fav,1511596146\n"
        "3,4365585,2520377,share,1511596146\n"
        "3,4365585,2520377,pv,not-a-time\n"
        "3,4365585\n"
    )
    summary, _ = import_events("--format", "taobao", str(path), "--no-progress")
    assert summary["read"] == 8
    assert summary["accepted"] == 5
    assert summary["skipped_by_reason"] == {
        "unknown behavior_type": 1,
        "unreadable timestamp": 1,
        "not 5 columns": 1,
    }
    types = Counter(Event.objects.filter(merchant__slug="taobao").values_list("event_type", flat=True))
    assert types == {EventType.VIEW: 2, EventType.PURCHASE: 1, EventType.CART: 1, EventType.FAVOURITE: 1}
    assert Product.objects.get(sku="2268318").category == "category-2520377"
    assert Consumer.objects.count() == 2
    again, _ = import_events("--format", "taobao", str(path), "--no-progress")
    assert (again["accepted"], again["duplicates"]) == (0, 5)


# ------------------------------------------------------------------ MovieLens


def write_movielens(folder: Path) -> Path:
    folder.mkdir()
    (folder / "u.data").write_text(
        "1\t10\t5\t874965758\n1\t20\t3\t876893171\n2\t10\t4\t878542960\n2\t30\t1\t876893119\n"
    )
    flags_comedy = "|".join(["0", "0", "0", "0", "0", "1"] + ["0"] * 13)
    flags_drama = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)
    (folder / "u.item").write_text(
        f"10|Richard III (1995)|22-Jan-1996||http://x|{flags_drama}\n"
        f"20|Toy Story (1995)|01-Jan-1995||http://x|{flags_comedy}\n",
        encoding="latin-1",
    )
    genres = "unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\nDocumentary|7\nDrama|8\n"
    (folder / "u.genre").write_text(genres)
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    return folder


def test_movielens_ratings_become_purchases_and_views(db, tmp_path):
    folder = write_movielens(tmp_path / "ml")
    summary, _ = import_events("--format", "movielens", str(folder), "--no-progress")
    assert (summary["read"], summary["accepted"]) == (4, 4)
    by_type = Counter(Event.objects.values_list("event_type", flat=True))
    assert by_type == {EventType.PURCHASE: 2, EventType.VIEW: 2}  # ratings 5 and 4 are purchases
    drama = Product.objects.get(sku="10")
    assert (drama.title, drama.category_path) == ("Richard III (1995)", "drama")
    assert Product.objects.get(sku="20").category == "comedy"
    assert Product.objects.get(sku="30").title == ""  # not in u.item
    one = Consumer.objects.get(pseudonym=pseudonymise("movielens:1"))
    two = Consumer.objects.get(pseudonym=pseudonymise("movielens:2"))
    assert (one.age_range, one.gender, one.country) == ("18-24", "m", "US")
    assert (two.age_range, two.gender, two.country) == ("45-54", "f", "")  # a Canadian postcode: no country


@pytest.mark.shared_data
def test_movielens_100k_sample_imports(shared_data, tmp_path, db):
    source = shared_data / "movielens-100k"
    if not source.is_dir():
        pytest.skip("movielens-100k data set not present")
    folder = tmp_path / "ml"
    folder.mkdir()
    lines = (source / "u.data").read_text().splitlines()[:3000]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    for name in ("u.item", "u.user", "u.genre"):
        (folder / name).write_bytes((source / name).read_bytes())
    summary, _ = import_events("--format", "movielens", str(folder / "u.data"), "--no-progress")
    expected_purchases = sum(int(line.split("\t")[2]) >= 4 for line in lines)
    assert summary["accepted"] == 3000
    assert Event.objects.filter(event_type=EventType.PURCHASE).count() == expected_purchases
    assert summary["profiles"]["accepted"] == 943
    assert not Product.objects.filter(title="").exists()


def test_movielens_without_u_data_is_an_error(db, tmp_path):
    with pytest.raises(CommandError, match="u.data not found"):
        import_events("--format", "movielens", str(tmp_path), "--no-progress")


# ------------------------------------------------------------------ our own CSV


def test_generic_csv_uses_the_ingestion_fields(merchant, tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        ["event_id", "consumer_id", "sku", "event_type", "occurred_at", "price", "quantity", "title", "extra"],
        [
            ["e1", "x@example.com", "A", "purchase", "2024-01-01T10:00:00Z", "3.50", "2", "Apple", "ignored"],
            ["e2", "x@example.com", "B", "view", "2024-01-01T10:01:00Z", "", "", "", ""],
            ["e3", "", "B", "view", "2024-01-01T10:01:00Z", "", "", "", ""],
        ],
    )
    summary, _ = import_events("--format", "csv", str(path), "--merchant", merchant.slug, "--no-progress")
    assert (summary["accepted"], summary["rejected"]) == (2, 1)
    assert summary["rejected_by_reason"] == {"consumer_id: is required": 1}
    assert Event.objects.get(event_type=EventType.PURCHASE).quantity == 2
    assert Product.objects.get(sku="A").title == "Apple"


def test_generic_csv_refuses_an_unstorable_offset_by_row_and_imports_the_rest(merchant, tmp_path):
    path = write_csv(
        tmp_path / "events.csv",
        ["event_id", "consumer_id", "sku", "event_type", "occurred_at"],
        [
            ["e1", "x@example.com", "A", "view", "2024-01-01T10:00:00Z"],
            ["e2", "x@example.com", "A", "view", "2024-01-01T10:00:00+18:00"],
            ["e3", "x@example.com", "A", "view", "2024-01-01T10:00:00+05:30"],
        ],
    )
    summary, _ = import_events("--format", "csv", str(path), "--merchant", merchant.slug, "--no-progress")
    assert (summary["accepted"], summary["rejected"]) == (2, 1)
    assert [reason.split(":")[0] for reason in summary["rejected_by_reason"]] == ["occurred_at"]
    assert Event.objects.count() == 2


def test_generic_csv_needs_a_merchant_column_or_option(db, tmp_path):
    path = write_csv(tmp_path / "e.csv", ["event_id", "consumer_id", "sku", "event_type", "occurred_at"], [])
    with pytest.raises(CommandError, match="merchant"):
        import_events("--format", "csv", str(path), "--no-progress")


def test_the_text_summary_names_counts_and_reasons(db, tmp_path):
    path = write_csv(
        tmp_path / "retail.csv",
        RETAIL_HEADER,
        [["536380", "22961", "JAM", "2", "12/1/10 9:41", "1.45", "", "United Kingdom", ""]],
    )
    out = io.StringIO()
    call_command("import_events", "--format", "online_retail", str(path), "--no-progress", stdout=out)
    text = out.getvalue()
    assert "1 rows read" in text
    assert "skipped before ingestion: 1 (missing CustomerID: 1)" in text
    assert "accepted (written): 0" in text


def test_a_bad_merchant_slug_is_refused_and_not_saved(db, tmp_path):
    from merchants.models import Merchant

    path = write_csv(tmp_path / "e.csv", ["event_id", "consumer_id", "sku", "event_type", "occurred_at"], [])
    with pytest.raises(CommandError, match="cannot create merchant 'not a slug!'.*slug"):
        import_events("--format", "csv", str(path), "--merchant", "not a slug!", "--no-progress")
    assert not Merchant.objects.filter(slug="not a slug!").exists()
