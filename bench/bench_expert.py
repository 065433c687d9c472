"""The hand-written, expert PySpark version of the NORTHWIND TRADES transformation.

The benchmark baseline for the generated code: one read per source, a filter, a left
join to counterparties deduplicated on ``Cpty ID``, ONE ``select`` of native functions
(no Python UDFs, no ``collect``) and a Parquet write.
"""

from __future__ import annotations

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F  # noqa: N812


def expert_trades(
    spark: SparkSession, trades_path: str, counterparties_path: str, out_path: str
) -> None:
    """Transform NORTHWIND trades into the TRADES target table at ``out_path`` (Parquet)."""
    trades = (
        spark.read.option("header", True)
        .option("inferSchema", False)
        .csv(trades_path)
        .where(F.col("Status") != "CANCELLED")
        .alias("t")
    )
    cpty = (
        spark.read.parquet(counterparties_path)
        .dropDuplicates(["Cpty ID"])
        .select(F.col("Cpty ID").alias("cp_id"), F.col("Cpty Name").alias("cp_name"))
    )
    joined = trades.join(F.broadcast(cpty), F.col("t.`Cpty ID`") == F.col("cp_id"), "left")

    def date(name: str, fmt: str) -> Column:
        return F.try_to_timestamp(F.col(f"`{name}`"), F.lit(fmt)).cast("date")

    side = F.col("Side")
    out = joined.select(
        F.trim(F.col("`Trade ID`")).alias("TRADE_ID"),
        date("Trade Date", "MM/dd/yyyy").alias("TRADE_DATE"),
        date("Settle Date", "dd.MM.yyyy").alias("SETTLE_DATE"),
        date("Book Date", "yyyyMMdd").alias("BOOK_DATE"),
        F.regexp_replace(F.col("`Account No`"), r"[^0-9]", "").alias("ACCOUNT"),
        F.upper(F.substring(F.col("`Desk Code`"), 1, 4)).alias("DESK"),
        F.when(side == "B", "BUY").when(side == "S", "SELL").otherwise("UNKNOWN").alias("SIDE"),
        F.col("Qty").try_cast("bigint").alias("QUANTITY"),
        F.round(F.col("Amount").try_cast("decimal(38,6)") * 1000, 2)
        .try_cast("decimal(18,2)")
        .alias("AMOUNT"),
        F.coalesce(F.nullif(F.upper(F.trim(F.col("Ccy"))), F.lit("")), F.lit("EUR")).alias(
            "CURRENCY"
        ),
        F.col("cp_name").alias("COUNTERPARTY"),
        F.concat_ws(" ", F.col("`Trader First`"), F.col("`Trader Last`")).alias("TRADER"),
        F.lit("NORTHWIND-OMS").alias("SOURCE_SYSTEM"),
        # The mapping's CASE, over the typed amount: under ANSI (Spark 4 default) a raw
        # string `Amount * 1000` is cast to BIGINT and fails on '1234.567'.
        F.expr(
            "CASE WHEN Side = 'S' THEN -try_cast(Amount AS DECIMAL(38,6)) * 1000"
            " ELSE try_cast(Amount AS DECIMAL(38,6)) * 1000 END"
        )
        .try_cast("decimal(18,2)")
        .alias("SIGNED_AMOUNT"),
    )
    out.write.mode("overwrite").parquet(out_path)


if __name__ == "__main__":
    import os
    import sys
    import tempfile
    from pathlib import Path

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    data = Path(__file__).resolve().parents[1] / "example_notebooks" / "data" / "northwind"
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "trades")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("bench_expert")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    expert_trades(session, str(data / "trades.csv"), str(data / "counterparties.parquet"), target)
    print(f"{session.read.parquet(target).count()} rows -> {target}")
    session.stop()
