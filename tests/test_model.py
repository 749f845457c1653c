"""The model's own comparison levels give the same answer as the Splink levels they stand for."""

from __future__ import annotations

import random

import duckdb

from tre_link.link.model import nhs_number_one_edit


def _single_edits(number: str) -> set[str]:
    digits = "0123456789"
    edits = {number[:i] + d + number[i + 1:] for i in range(len(number)) for d in digits}
    edits |= {number[:i] + number[i + 1] + number[i] + number[i + 2:] for i in range(len(number) - 1)}
    edits |= {number[:i] + number[i + 1:] for i in range(len(number))}
    edits |= {number[:i] + d + number[i:] for i in range(len(number) + 1) for d in digits}
    return edits


def _pairs() -> list[tuple[str | None, str | None]]:
    rng = random.Random(7)
    numbers = ["".join(rng.choice("0123456789") for _ in range(10)) for _ in range(3)]
    pairs = [(n, e) for n in numbers for e in sorted(_single_edits(n))]
    pairs += [(n, e[:5] + e[6] + e[5] + e[7:]) for n in numbers for e in sorted(_single_edits(n))[:40]]  # two edits
    pairs += [("".join(rng.choice("0123456789") for _ in range(10)), "".join(rng.choice("0123456789") for _ in range(10)))
              for _ in range(500)]
    pairs += [("12", "21"), ("1", ""), ("123", "1234"), ("12345678", "21345678"), (None, "1234567890"), (None, None)]
    return pairs


def test_guarded_nhs_level_equals_damerau_levenshtein_on_spark(spark):
    pairs = _pairs()
    condition = nhs_number_one_edit().get_comparison_level("spark").as_dict()["sql_condition"]
    df = spark.createDataFrame(pairs, "nhs_number_digits_l string, nhs_number_digits_r string")
    disagreements = df.where(
        f"not (({condition}) <=> (damerau_levenshtein(nhs_number_digits_l, nhs_number_digits_r) <= 1))"
    ).count()
    assert disagreements == 0
    assert df.where(condition).count() > 300  # the single edits pass the guard


def test_guarded_nhs_level_equals_damerau_levenshtein_on_duckdb():
    condition = nhs_number_one_edit().get_comparison_level("duckdb").as_dict()["sql_condition"]
    con = duckdb.connect()
    con.execute("create table p (nhs_number_digits_l varchar, nhs_number_digits_r varchar)")
    con.executemany("insert into p values (?, ?)", _pairs())
    (disagreements,) = con.execute(
        f"select count(*) from p where ({condition}) is distinct from "
        "(damerau_levenshtein(nhs_number_digits_l, nhs_number_digits_r) <= 1)"
    ).fetchone()
    assert disagreements == 0
