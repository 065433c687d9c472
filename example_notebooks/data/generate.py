"""Generate the bundled example client NORTHWIND (and larger copies for benchmarks).

Run ``python example_notebooks/data/generate.py`` to rewrite ``northwind/``:

* ``trades.csv``: 5,000 trades with the usual client mess (padded ids, three date
  formats, mixed-case codes, padded or blank currencies, quoted free-text notes);
* ``counterparties.parquet``: 60 counterparties, every ``Cpty ID`` used by the trades;
* ``northwind.xlsx``: the source-to-target mapping workbook, laid out like a real
  client's (title row, merged cells, untidy headers).

Everything is drawn from ``random.Random(seed)``, so the output is byte-stable for the
same Python, pyarrow and openpyxl versions. ``write_trades_csv`` writes ~10 M rows
(~1 GB) in about a minute for the benchmark.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

HERE = Path(__file__).resolve().parent
NORTHWIND = HERE / "northwind"

TRADES_HEADER = [
    "Trade ID", "Trade Date", "Settle Date", "Book Date", "Account No", "Desk Code", "Side",
    "Qty", "Amount", "Ccy", "Cpty ID", "Status", "Trader First", "Trader Last", "Notes",
]  # fmt: skip
N_COUNTERPARTIES = 60
EXAMPLE_TRADES = 5_000
_BLOCK = 20_000
_FIRST_DAY = dt.date(2025, 1, 1)
_N_DAYS = (dt.date(2026, 12, 31) - _FIRST_DAY).days + 1
_FIXED_ZIP_TIME = (2025, 1, 1, 0, 0, 0)
_FIXED_STAMP = "2025-01-01T00:00:00Z"

# Pools: repeating an entry sets its share (rng.choices without weights is the fast path).
_ID_PAD_LEFT = [" "] + [""] * 11
_ID_PAD_RIGHT = ["  ", " "] + [""] * 14
_SETTLE_LAG = [2] * 30 + [3] * 8 + [1] * 2 + [-1]  # -1: not settled yet (blank), ~2.5%
_DESKS = [
    "eqty-ldn", "EQTY-NYC", "Eqty-hkg", "FXOP-NYC", "fxop-ldn", "FxOp-TKY",
    "rate-ldn", "RATE-NYC", "crdt-ldn", "CRDT-nyc", "comm-LDN",
]  # fmt: skip
_SIDES = ["B", "S"]
_CCYS = (
    ["usd", " EUR", "gbp ", "USD", "EUR", "GBP", "eur", " usd", "chf", "JPY", "Cad"] * 3
    + ["usd", "EUR"]
    + [""]
)  # 1 blank in 36, ~3 %
_STATUSES = ["CANCELLED"] * 2 + ["AMENDED"] * 5 + ["NEW"] * 18  # 8 % cancelled
_FIRST_NAMES = [
    "Maria", "James", "Aiko", "Olu", "Priya", "Lars", "Sofia", "Chen", "Fatima", "Tom",
    "Ines", "Rafael", "Grace", "Dmitri", "Amara", "Hugo", "Mei", "Sean", "Zara", "Ken",
]  # fmt: skip
_LAST_NAMES = [
    "Fernandez", "O'Brien", "Tanaka", "Adeyemi", "Sharma", "Nilsson", "Rossi", "Wei",
    "Haddad", "Baker", "Moreau", "Silva", "Kim", "Petrov", "Okafor", "Dubois", "Lin",
    "Murphy", "Khan", "Sato", "van der Berg", "Smith-Jones",
]  # fmt: skip
_NOTES = [""] * 14 + [
    "client call, confirmed by phone",
    'booked per "Jim" on desk',
    'late amend, "price" corrected, see ticket 4411',
    "split fill; 3 parts",
    "block trade",
    "give-up to PB",
    'quoted "all-in", fees incl.',
    "manual booking, check allocation",
    "STP",
    "re-booked after break",
]
_CPTY_NAME_A = [
    "Aldgate", "Baltic", "Cedar", "Danube", "Everest", "Fjord", "Granite", "Harbour",
    "Iris", "Juniper", "Kestrel", "Lantern", "Meridian", "Northgate", "Orion", "Pioneer",
    "Quay", "Riverside", "Sterling", "Thames", "Union", "Vantage", "Westbrook", "Zenith",
]  # fmt: skip
_CPTY_NAME_B = ["Capital", "Securities", "Asset Management", "Bank", "Partners", "Markets"]
_CPTY_NAME_C = ["plc", "Ltd", "AG", "S.A.", "LLC", "GmbH", "N.V.", "Inc."]
_COUNTRIES = ["GB", "gb", "US", "us", "DE", "de", "FR", "fr", "NL", "CH", "ch", "JP", "IE", "LU"]
_LOUS = ["5493", "2138", "5299", "9695", "8156", "7245"]
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _day(i: int) -> dt.date:
    return _FIRST_DAY + dt.timedelta(days=i)


def _trade_blocks(n: int, seed: int) -> Iterator[list[tuple[str, ...]]]:
    """Yield the ``n`` trade rows in blocks of tuples, drawing column-wise for speed."""
    rng = random.Random(seed)
    days = [_day(i) for i in range(_N_DAYS + 4)]
    trade_fmt = [d.strftime("%m/%d/%Y") for d in days]
    settle_fmt = [d.strftime("%d.%m.%Y") for d in days]
    book_fmt = [d.strftime("%Y%m%d") for d in days]
    accounts = [f"ACC-{rng.randrange(1, 100_000):05d}-{rng.randrange(100):02d}" for _ in range(400)]
    cpty_ids = [f"CP{i:03d}" for i in range(1, N_COUNTERPARTIES + 1)]
    width = max(6, len(str(n)))
    choices = rng.choices
    for start in range(0, n, _BLOCK):
        k = min(_BLOCK, n - start)
        ids = [f"T{i:0{width}d}" for i in range(start + 1, start + k + 1)]
        left = choices(_ID_PAD_LEFT, k=k)
        right = choices(_ID_PAD_RIGHT, k=k)
        day_idx = choices(range(_N_DAYS), k=k)
        lags = choices(_SETTLE_LAG, k=k)
        qty = choices(range(1, 250_001), k=k)
        milli = choices(range(1_000, 50_000_000), k=k)  # 1.000 .. 49,999.999 thousands
        decimals = choices((3, 3, 2, 1, 0), k=k)
        cols = (
            [f"{a}{b}{c}" for a, b, c in zip(left, ids, right, strict=True)],
            [trade_fmt[d] for d in day_idx],
            ["" if lag < 0 else settle_fmt[d + lag] for d, lag in zip(day_idx, lags, strict=True)],
            [book_fmt[d] for d in day_idx],
            choices(accounts, k=k),
            choices(_DESKS, k=k),
            choices(_SIDES, k=k),
            [str(q) for q in qty],
            [_amount(m, p) for m, p in zip(milli, decimals, strict=True)],
            choices(_CCYS, k=k),
            choices(cpty_ids, k=k),
            choices(_STATUSES, k=k),
            choices(_FIRST_NAMES, k=k),
            choices(_LAST_NAMES, k=k),
            choices(_NOTES, k=k),
        )
        yield list(zip(*cols, strict=True))


def _amount(milli: int, places: int) -> str:
    """Render an amount in thousands with ``places`` (0-3) decimals, never negative."""
    whole, frac = divmod(milli, 1000)
    if places == 0:
        return str(whole)
    return f"{whole}.{frac:03d}"[: len(str(whole)) + 1 + places]


def trades_rows(n: int, seed: int = 7) -> Iterator[list[str]]:
    """Yield ``n`` raw trade rows (header excluded), deterministic for ``seed``."""
    for block in _trade_blocks(n, seed):
        for row in block:
            yield list(row)


def write_trades_csv(path: str | Path, n: int, seed: int = 7) -> Path:
    """Write ``n`` trades with a header row to ``path`` as CSV (``\\n`` line endings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="", buffering=1 << 22) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TRADES_HEADER)
        for block in _trade_blocks(n, seed):
            writer.writerows(block)
    return path


def _lei(rng: random.Random) -> str:
    """A structurally valid 20-character LEI (ISO 17442, ISO 7064 mod 97-10 check digits)."""
    body = rng.choice(_LOUS) + "00" + "".join(rng.choices(_ALNUM, k=12))
    digits = "".join(str(int(ch, 36)) for ch in body + "00")
    return f"{body}{98 - int(digits) % 97:02d}"


def write_counterparties_parquet(
    path: str | Path, n: int = N_COUNTERPARTIES, seed: int = 7
) -> Path:
    """Write ``n`` counterparties (unique ``Cpty ID`` CP001..) to ``path`` as Parquet."""
    rng = random.Random(seed + 1)
    ids = [f"CP{i:03d}" for i in range(1, n + 1)]
    names: list[str] = []
    seen: set[str] = set()
    for i, _ in enumerate(ids):
        parts = (rng.choice(_CPTY_NAME_A), rng.choice(_CPTY_NAME_B), rng.choice(_CPTY_NAME_C))
        name = " ".join(parts)
        if name in seen:
            name = f"{parts[0]} {parts[1]} {i} {parts[2]}"
        seen.add(name)
        names.append(name)
    countries: list[str | None] = [rng.choice(_COUNTRIES) for _ in ids]
    for i in (7, 41):  # a couple of unknown countries
        if i < n:
            countries[i] = None
    table = pa.table(
        {
            "Cpty ID": pa.array(ids, pa.string()),
            "Cpty Name": pa.array(names, pa.string()),
            "Country": pa.array(countries, pa.string()),
            "LEI": pa.array([_lei(rng) for _ in ids], pa.string()),
            "Active": pa.array(rng.choices(["Y"] * 9 + ["N"], k=n), pa.string()),
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy")
    return path


MAPPING_HEADERS = [
    "Target Table", "Target Column", "DATA TYPE", "Source File", " Source Column ",
    "Transformation Rule", "Mandatory", "Default Value", "Comments",
]  # fmt: skip

# (target column, data type, source file, source column, rule, mandatory, default, comments)
TRADES_MAPPING: list[tuple[str, ...]] = [
    ("TRADE_ID", "string", "trades", "Trade ID", "trim", "Y", "", ""),
    ("TRADE_DATE", "date", "trades", "Trade Date", "convert MM/DD/YYYY to YYYY-MM-DD", "Y", "", ""),
    ("SETTLE_DATE", "date", "trades", "Settle Date", "parse date DD.MM.YYYY", "N", "",
     "blank until settled"),
    ("BOOK_DATE", "date", "trades", "Book Date", "date format YYYYMMDD", "Y", "", ""),
    ("ACCOUNT", "string", "trades", "Account No", "digits only", "Y", "", ""),
    ("DESK", "string", "trades", "Desk Code", "first 4 characters, then upper", "Y", "", ""),
    ("SIDE", "string", "trades", "Side", "map B=BUY, S=SELL, else UNKNOWN", "Y", "", ""),
    ("QUANTITY", "bigint", "trades", "Qty", "direct move", "Y", "", ""),
    ("AMOUNT", "decimal(18,2)", "trades", "Amount", "multiply by 1000 and round to 2", "Y", "",
     "amounts arrive in thousands"),
    ("CURRENCY", "string", "trades", "Ccy", "trim, upper", "Y", "EUR", ""),
    ("COUNTERPARTY", "string", "counterparties", "Cpty Name",
     "lookup Cpty Name from counterparties on Cpty ID", "N", "", ""),
    ("TRADER", "string", "trades", "", "concat Trader First, Trader Last with ' '", "N", "", ""),
    ("SOURCE_SYSTEM", "string", "", "", "constant 'NORTHWIND-OMS'", "Y", "", ""),
    ("SIGNED_AMOUNT", "decimal(18,2)", "trades", "Amount",
     "sql: CASE WHEN Side = 'S' THEN -Amount * 1000 ELSE Amount * 1000 END", "N", "", ""),
]  # fmt: skip
COUNTERPARTIES_MAPPING: list[tuple[str, ...]] = [
    ("CPTY_ID", "string", "counterparties", "Cpty ID", "as is", "Y", "", ""),
    ("CPTY_NAME", "string", "counterparties", "Cpty Name", "upper", "Y", "", ""),
    ("COUNTRY", "string", "counterparties", "Country", "upper", "N", "XX", ""),
    ("LEI", "string", "counterparties", "LEI", "1:1", "N", "", ""),
    ("IS_ACTIVE", "boolean", "counterparties", "Active", "map Y=true, N=false", "Y", "", ""),
]
SOURCES_ROWS = [
    ["Source Name", "File", "Format", "Delimiter", "Header", "Encoding"],
    ["trades", "trades.csv", "csv", ",", "Yes", "utf-8"],
    ["counterparties", "counterparties.parquet", "parquet", "", "", ""],
]
FILTERS_ROWS = [
    ["Target Table", "Condition", "Description"],
    ["TRADES", "Status <> 'CANCELLED'", "exclude cancelled trades"],
]

_HEADER_FONT = Font(bold=True, color="FFFFFF")
_HEADER_FILL = PatternFill("solid", fgColor="1F4E78")
_TABLE_FILL = PatternFill("solid", fgColor="DDEBF7")
_THIN = Side(style="thin", color="A6A6A6")
_BOX = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)
_TOP = Alignment(vertical="top", wrap_text=True)
_MIDDLE = Alignment(vertical="center", horizontal="center", wrap_text=True)


def _header_row(ws: Worksheet, row: int, values: Sequence[str]) -> None:
    for col, value in enumerate(values, start=1):
        cell = ws.cell(row=row, column=col, value=value)
        cell.font = _HEADER_FONT
        cell.fill = _HEADER_FILL
        cell.border = _BOX
        cell.alignment = _MIDDLE


def _widths(ws: Worksheet, widths: Sequence[float]) -> None:
    for col, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(col)].width = width


def _merge_runs(ws: Worksheet, col: int, first: int, values: Sequence[str]) -> None:
    """Write ``values`` down ``col`` from row ``first``, merging runs of equal non-blank cells."""
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i] and values[i]:
            j += 1
        ws.cell(row=first + i, column=col, value=values[i] or None)
        if j > i:
            ws.merge_cells(start_row=first + i, start_column=col, end_row=first + j, end_column=col)
        ws.cell(row=first + i, column=col).alignment = _MIDDLE if j > i else _TOP
        i = j + 1


def _mapping_sheet(ws: Worksheet) -> None:
    ws.title = "Mapping"
    ws["A1"] = "Northwind Capital – source to target mapping (v3)"
    ws["A1"].font = Font(bold=True, size=14, color="1F4E78")
    ws.merge_cells("A1:I1")
    ws.row_dimensions[1].height = 24
    _header_row(ws, 3, MAPPING_HEADERS)
    row = 4
    for n_table, (table, rows) in enumerate(
        (("TRADES", TRADES_MAPPING), ("COUNTERPARTIES", COUNTERPARTIES_MAPPING))
    ):
        if n_table:
            row += 1  # one blank row between the tables
        first, last = row, row + len(rows) - 1
        for offset, values in enumerate(rows):
            for col, value in enumerate(values, start=2):
                if col == 4:
                    continue  # Source File: merged below
                cell = ws.cell(row=row + offset, column=col, value=value or None)
                cell.alignment = _TOP
        for r in range(first, last + 1):
            for col in range(1, 10):
                ws.cell(row=r, column=col).border = _BOX
        ws.cell(row=first, column=1, value=table)
        ws.merge_cells(start_row=first, start_column=1, end_row=last, end_column=1)
        top = ws.cell(row=first, column=1)
        top.font = Font(bold=True)
        top.fill = _TABLE_FILL
        top.alignment = _MIDDLE
        _merge_runs(ws, 4, first, [values[2] for values in rows])
        row = last + 1
    _widths(ws, [18, 18, 15, 17, 16, 56, 11, 14, 28])
    ws.freeze_panes = "A4"


def write_workbook(path: str | Path) -> Path:
    """Write the NORTHWIND mapping workbook (sheets Mapping, Sources, Filters) to ``path``."""
    wb = Workbook()
    first = wb.active
    assert isinstance(first, Worksheet)
    _mapping_sheet(first)
    for title, rows, widths in (
        ("Sources", SOURCES_ROWS, [16, 24, 10, 11, 9, 10]),
        ("Filters", FILTERS_ROWS, [14, 28, 30]),
    ):
        ws = wb.create_sheet(title)
        _header_row(ws, 1, rows[0])
        for values in rows[1:]:
            ws.append([v or None for v in values])
        _widths(ws, widths)
        ws.freeze_panes = "A2"
    wb.properties.creator = "Northwind Capital – Data Office"
    wb.properties.title = "Northwind source to target mapping"
    wb.properties.created = dt.datetime(2025, 1, 1)
    buf = io.BytesIO()
    wb.save(buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_stable_zip(buf.getvalue()))
    return path


def _stable_zip(data: bytes) -> bytes:
    """Rewrite an xlsx with fixed timestamps so that regenerating it is byte-stable."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(data)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "docProps/core.xml":
                body = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*(<)",
                    rb"\g<1>" + _FIXED_STAMP.encode() + rb"\2",
                    body,
                )
            info = zipfile.ZipInfo(item.filename, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            dst.writestr(info, body)
    return out.getvalue()


def main() -> None:
    """Regenerate the bundled NORTHWIND example in ``northwind/``."""
    write_trades_csv(NORTHWIND / "trades.csv", EXAMPLE_TRADES)
    write_counterparties_parquet(NORTHWIND / "counterparties.parquet")
    write_workbook(NORTHWIND / "northwind.xlsx")
    for name in ("trades.csv", "counterparties.parquet", "northwind.xlsx"):
        print(f"{NORTHWIND / name}  {(NORTHWIND / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
