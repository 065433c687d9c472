"""Generate the held-in client-file examples: one small client per source format.

Run ``python tests/data/formats/generate.py`` to rewrite the folders beside this file.
Each folder holds the client's files, its mapping workbook (``mapping.xlsx``) and
``expected.json``: the output rows per target table, worked out here in plain Python
from the same records, never by the tool under test.

* ``fixed_width``: fixed-width trades (a Layout sheet with Length and End) and a CSV of
  counterparties whose ids are not zero-padded (``66`` matches ``0000000066``);
* ``gzip_parts``: a glob of gzip-compressed, pipe-delimited CSV parts, one with a quoted
  line break and a quoted pipe in a later row;
* ``json_document``: one JSON document with the records at ``export.customers``;
* ``xml``: positions with attributes and nested elements, Row Tag ``position``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from openpyxl import Workbook

HERE = Path(__file__).resolve().parent
MAPPING_HEADER = [
    "Target Table",
    "Target Column",
    "Data Type",
    "Source",
    "Source Column",
    "Transformation Rule",
    "Required",
]


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> None:
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)


def write_expected(folder: Path, tables: dict[str, list[dict[str, Any]]]) -> None:
    text = json.dumps(tables, indent=1, sort_keys=True, default=str)
    (folder / "expected.json").write_text(text + "\n", encoding="utf-8")


# -- fixed-width -----------------------------------------------------------------------------

#: (field, start, length) as a layout lists them; End is given instead of Length for some.
LAYOUT = [
    ("Trade ID", 1, 10),
    ("Trade Date", 11, 8),
    ("Account", 19, 8),
    ("Amount", 27, 12),
    ("Ccy", 39, 3),
    ("Cpty ID", 42, 10),
    ("Filler", 52, 4),
]
TRADES = [
    ("T000000001", "20250102", "ACC-1", "1234.50", "usd", 66),
    ("T000000002", "20250103", "ACC-22", "-99.99", "EUR", 7),
    ("T000000003", "20250103", "ACC-3", "0.01", "gbp", 66),
    ("T000000004", "20250106", "ACC-4444", "1000000", "USD", 123),
    ("T000000005", "20250107", "ACC-5", "42.00", "chf", 999),  # no such counterparty
    ("T000000006", "20250108", "ACC-6", "7.5", "usd", 7),
]
COUNTERPARTIES = [(66, "Acme Bank"), (7, "Beta Fund"), (123, "Gamma Capital")]


def fixed_width(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    lines = []
    for trade_id, day, account, amount, ccy, cpty in TRADES:
        line = f"{trade_id:<10}{day:<8}{account:<8}{amount:>12}{ccy:<3}{cpty:010d}    "
        assert len(line) == 55
        lines.append(line + "\n")
    (folder / "trades.txt").write_text("".join(lines), encoding="utf-8")
    (folder / "counterparties.csv").write_text(
        "Cpty ID,Cpty Name\n" + "".join(f"{i},{name}\n" for i, name in COUNTERPARTIES),
        encoding="utf-8",
    )
    layout: list[list[Any]] = [["Source Name", "Field", "Start", "Length", "End"]]
    for index, (name, start, length) in enumerate(LAYOUT):
        if index % 2:  # every other field by its End (inclusive) instead of its Length
            layout.append(["trades", name, start, None, start + length - 1])
        else:
            layout.append(["trades", name, start, length, None])
    workbook(
        folder / "mapping.xlsx",
        {
            "Mapping": [
                MAPPING_HEADER,
                ["TRADES", "TRADE_ID", "string", "trades", "Trade ID", "trim", "Y"],
                [
                    "TRADES",
                    "TRADE_DATE",
                    "date",
                    "trades",
                    "Trade Date",
                    "parse date YYYYMMDD",
                    "Y",
                ],
                ["TRADES", "ACCOUNT", "string", "trades", "Account", "trim", "Y"],
                ["TRADES", "AMOUNT", "decimal(18,2)", "trades", "Amount", "trim", "Y"],
                ["TRADES", "CCY", "string", "trades", "Ccy", "upper", "Y"],
                [
                    "TRADES",
                    "COUNTERPARTY",
                    "string",
                    "counterparties",
                    "Cpty Name",
                    "lookup Cpty Name from counterparties on Cpty ID",
                    "N",
                ],
            ],
            "Sources": [
                ["Source Name", "File/Path", "Format", "Delimiter"],
                ["trades", "trades.txt", "fixed-width", None],
                ["counterparties", "counterparties.csv", "csv", ","],
            ],
            "Layout": layout,
        },
    )
    names = dict(COUNTERPARTIES)
    write_expected(
        folder,
        {
            "TRADES": [
                {
                    "TRADE_ID": trade_id,
                    "TRADE_DATE": dt.datetime.strptime(day, "%Y%m%d").date().isoformat(),
                    "ACCOUNT": account,
                    "AMOUNT": str(Decimal(amount).quantize(Decimal("0.01"))),
                    "CCY": ccy.upper(),
                    "COUNTERPARTY": names.get(cpty),
                }
                for trade_id, day, account, amount, ccy, cpty in TRADES
            ]
        },
    )


# -- a glob of gzip parts ----------------------------------------------------------------------

PRICES = [
    [("2025-01-02", "aapl", "189.50", "first close"), ("2025-01-02", "msft", "402.10", "")],
    [
        ("2025-01-03", "aapl", "190.25", 'split "A|B" share class'),
        ("2025-01-03", "msft", "399.00", ""),
    ],
    [
        ("2025-01-06", "aapl", "191.00", ""),
        ("2025-01-06", "msft", "401.75", ""),
        ("2025-01-06", "nvda", "140.10", "halted at 10:02\nresumed at 10:40"),
        ("2025-01-06", "tsla", "250.00", "after the\nline break"),
    ],
]


def _pipe_field(value: str) -> str:
    if any(c in value for c in '|"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def gzip_parts(folder: Path) -> None:
    parts = folder / "prices"
    parts.mkdir(parents=True, exist_ok=True)
    for index, rows in enumerate(PRICES):
        text = "Price Date|Ticker|Close|Comment\n" + "".join(
            "|".join(_pipe_field(v) for v in row) + "\n" for row in rows
        )
        data = gzip.compress(text.encode(), mtime=0)
        (parts / f"part-{index:05d}.csv.gz").write_bytes(data)
    workbook(
        folder / "mapping.xlsx",
        {
            "Mapping": [
                MAPPING_HEADER,
                [
                    "PRICES",
                    "PRICE_DATE",
                    "date",
                    "prices",
                    "Price Date",
                    "parse date YYYY-MM-DD",
                    "Y",
                ],
                ["PRICES", "TICKER", "string", "prices", "Ticker", "upper", "Y"],
                ["PRICES", "CLOSE", "decimal(18,4)", "prices", "Close", "copy", "Y"],
                ["PRICES", "COMMENT", "string", "prices", "Comment", "copy", "N"],
            ],
            "Sources": [
                ["Source Name", "File/Path", "Format", "Delimiter"],
                ["prices", "prices/part-*.csv.gz", "csv", "pipe"],
            ],
        },
    )
    write_expected(
        folder,
        {
            "PRICES": [
                {
                    "PRICE_DATE": day,
                    "TICKER": ticker.upper(),
                    "CLOSE": str(Decimal(close).quantize(Decimal("0.0001"))),
                    "COMMENT": comment or None,
                }
                for rows in PRICES
                for day, ticker, close, comment in rows
            ]
        },
    )


# -- a JSON document with a record path --------------------------------------------------------

CUSTOMERS = [
    {"id": 1, "name": " Ada Lovelace ", "country": "gb", "balance": 1250.5, "since": "2019-03-01"},
    {"id": 2, "name": "Grace Hopper", "country": "us", "balance": -20.0, "since": "2020-11-15"},
    {"id": 3, "name": "Alan Turing", "country": "gb", "balance": 0.25, "since": "2021-06-23"},
    {
        "id": 4,
        "name": "Katherine Johnson",
        "country": None,
        "balance": 99.99,
        "since": "2022-01-31",
    },
]


def json_document(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    document = {"export": {"generated": "2025-01-31T00:00:00Z", "customers": CUSTOMERS,
                           "count": len(CUSTOMERS)}}  # fmt: skip
    (folder / "customers.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    workbook(
        folder / "mapping.xlsx",
        {
            "Mapping": [
                MAPPING_HEADER,
                ["CUSTOMERS", "CUSTOMER_ID", "bigint", "customers", "id", "copy", "Y"],
                ["CUSTOMERS", "NAME", "string", "customers", "name", "trim", "Y"],
                ["CUSTOMERS", "COUNTRY", "string", "customers", "country", "upper", "N"],
                ["CUSTOMERS", "BALANCE", "decimal(18,2)", "customers", "balance", "round 2", "Y"],
                ["CUSTOMERS", "SINCE", "date", "customers", "since", "parse date YYYY-MM-DD", "Y"],
            ],
            "Sources": [
                ["Source Name", "File/Path", "Format", "Record Path"],
                ["customers", "customers.json", "json", "export.customers"],
            ],
        },
    )
    write_expected(
        folder,
        {
            "CUSTOMERS": [
                {
                    "CUSTOMER_ID": c["id"],
                    "NAME": c["name"].strip(),
                    "COUNTRY": c["country"].upper() if c["country"] else None,
                    "BALANCE": str(Decimal(str(c["balance"])).quantize(Decimal("0.01"))),
                    "SINCE": c["since"],
                }
                for c in CUSTOMERS
            ]
        },
    )


# -- XML with a row tag -------------------------------------------------------------------------

POSITIONS = [
    {
        "id": "P1",
        "status": "open",
        "account": "00012",
        "branch": "LDN",
        "isin": "US0378331005",
        "qty": "100",
        "price": "189.5",
        "currency": "USD",
    },
    {
        "id": "P2",
        "status": "closed",
        "account": "00013",
        "branch": "",
        "isin": "US5949181045",
        "qty": "20",
        "price": "402.1",
        "currency": "USD",
    },
    {
        "id": "P3",
        "status": "open",
        "account": "00012",
        "branch": "LDN",
        "isin": "GB0002634946",
        "qty": "5000",
        "price": "6.12",
        "currency": "GBP",
    },
    {
        "id": "P4",
        "status": "open",
        "account": "00140",
        "branch": "HKG",
        "isin": "HK0700000002",
        "qty": "300",
        "price": "410.0",
        "currency": "HKD",
    },
]


def xml(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    body = "".join(
        f"  <position id={quoteattr(p['id'])} status={quoteattr(p['status'])}>\n"
        f"    <account><id>{p['account']}</id><branch>{escape(p['branch'])}</branch></account>\n"
        f"    <isin>{p['isin']}</isin>\n"
        f"    <qty>{p['qty']}</qty>\n"
        f"    <price currency={quoteattr(p['currency'])}>{p['price']}</price>\n"
        "  </position>\n"
        for p in POSITIONS
    )
    head = '<?xml version="1.0" encoding="UTF-8"?>\n<positions as_of="2025-01-31">\n'
    text = f"{head}{body}</positions>\n"
    (folder / "positions.xml").write_text(text, encoding="utf-8")
    workbook(
        folder / "mapping.xlsx",
        {
            "Mapping": [
                MAPPING_HEADER,
                ["POSITIONS", "POSITION_ID", "string", "positions", "_id", "copy", "Y"],
                ["POSITIONS", "ACCOUNT_ID", "bigint", "positions", "account.id", "copy", "Y"],
                ["POSITIONS", "BRANCH", "string", "positions", "account.branch", "copy", "Y"],
                ["POSITIONS", "ISIN", "string", "positions", "isin", "copy", "Y"],
                ["POSITIONS", "QTY", "bigint", "positions", "qty", "copy", "Y"],
                ["POSITIONS", "PRICE", "decimal(18,4)", "positions", "price._VALUE", "copy", "Y"],
                ["POSITIONS", "CCY", "string", "positions", "price._currency", "copy", "Y"],
            ],
            "Sources": [
                ["Source Name", "File/Path", "Format", "Row Tag"],
                ["positions", "positions.xml", "xml", "position"],
            ],
            "Filters": [["Target Table", "Condition"], ["POSITIONS", "_status = 'open'"]],
        },
    )
    write_expected(
        folder,
        {
            "POSITIONS": [
                {
                    "POSITION_ID": p["id"],
                    "ACCOUNT_ID": int(p["account"]),
                    "BRANCH": p["branch"],
                    "ISIN": p["isin"],
                    "QTY": int(p["qty"]),
                    "PRICE": str(Decimal(p["price"]).quantize(Decimal("0.0001"))),
                    "CCY": p["currency"],
                }
                for p in POSITIONS
                if p["status"] == "open"
            ]
        },
    )


def main() -> None:
    fixed_width(HERE / "fixed_width")
    gzip_parts(HERE / "gzip_parts")
    json_document(HERE / "json_document")
    xml(HERE / "xml")


if __name__ == "__main__":
    main()
