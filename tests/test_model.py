"""The model's own comparison levels give the same answer as the Splink levels they stand for."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import splink.comparison_library as cl

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


# ------------------------------------------------------------------ comparisons from config


def _gammas(spark, records, comparisons):
    """Each pair's comparison-vector values (gamma per field), for records paired by column `pair`."""
    from tre_link.link import probabilistic
    from tre_link.platform.config import ComparisonConfig, LinkageConfig

    linkage = LinkageConfig(blocking_rules_training=["1 = 1", "1 = 1"], blocking_rules_predict=["l.pair = r.pair"],
                            comparisons=[ComparisonConfig(**c) for c in comparisons])
    model = probabilistic.new_model(linkage)
    with probabilistic.register_records(records, model, ["l.pair = r.pair"], keep=("pair",)) as registered:
        sql = probabilistic._comparison_vectors_sql(
            model, probabilistic._blocked_sql(model, ["l.pair = r.pair"], registered.view))
        rows = probabilistic._run_sql(spark, sql).collect()
    return {r["unique_id_l"]: {c["field"]: r[f"gamma_{c['field']}"] for c in comparisons} for r in rows}


def test_generic_presets_put_pairs_in_the_levels_they_describe(spark):
    import datetime as dt

    d = dt.date
    records = spark.createDataFrame(
        [
            # pair, id, given name and its phonetic code, dob, address, identifier, postcode
            ("p1", "a1", "JOHN", "JN", d(1980, 5, 17), "12 HIGH STREET LEEDS", "ABC123", "2612"),
            ("p1", "a2", "JOHN", "JN", d(1980, 5, 17), "12 HIGH STREET LEEDS", "ABC123", "2612"),  # all exact
            ("p2", "b1", "JONATHAN", "JN0N", d(1980, 5, 17), "12 HIGH STREET LEEDS", "ABC123", "2612"),
            ("p2", "b2", "JONATHON", "JN0N", d(1980, 5, 18), "12 HIGH STRET LEEDS", "ABC132", "2621"),  # typos
            ("p3", "c1", "MARY", "MR", d(1980, 5, 7), "ROSE COURT 9 ELM ROAD", "X1", None),
            ("p3", "c2", "ZOE", "S", d(1980, 7, 5), "9 ELM ROAD LEEDS", "Y2", "2000"),  # swap, shared words, null
            ("p4", "d1", "ANNA", "AN", d(1980, 5, 7), "1 A ST", "X1", "3000"),
            ("p4", "d2", "ANNE", "AN", d(1980, 5, 30), "99 ZED AVENUE NORTH", "X1", "4111"),
        ],
        "pair string, unique_id string, given_name string, given_name_phonetic string, dob date, address string, "
        "ref string, postcode string",
    )
    got = _gammas(spark, records, [
        {"field": "given_name", "preset": "name"}, {"field": "dob", "preset": "date"},
        {"field": "address", "preset": "address"}, {"field": "ref", "preset": "id"},
        {"field": "postcode", "preset": "postcode_plain"},
    ])
    # Levels count down from the first (highest) non-null level; -1 is null, 0 else.
    assert got["a1"] == {"given_name": 4, "dob": 5, "address": 4, "ref": 2, "postcode": 2}
    assert got["b1"] == {"given_name": 3, "dob": 4, "address": 3, "ref": 1, "postcode": 1}  # JW 0.92, one edit
    assert got["c1"] == {"given_name": 0, "dob": 3, "address": 2, "ref": 0, "postcode": -1}
    assert got["d1"] == {"given_name": 2, "dob": 2, "address": 0, "ref": 2, "postcode": 0}


def test_custom_levels_sit_between_the_null_and_else_levels(spark):
    records = spark.createDataFrame(
        [("p1", "a1", "AB12"), ("p1", "a2", "AB12"), ("p2", "b1", "AB12"), ("p2", "b2", "AB99"),
         ("p3", "c1", "AB12"), ("p3", "c2", "ZZ12"), ("p4", "d1", None), ("p4", "d2", "ZZ12")],
        "pair string, unique_id string, ref string",
    )
    levels = [{"sql": "ref_l = ref_r", "label": "same"}, {"sql": "left(ref_l, 2) = left(ref_r, 2)", "label": "prefix"}]
    got = _gammas(spark, records, [{"field": "ref", "levels": levels}])
    assert {k: v["ref"] for k, v in got.items()} == {"a1": 2, "b1": 1, "c1": 0, "d1": -1}


def test_default_settings_equal_the_uk_health_comparisons_level_for_level():
    """conf/demo.yaml has no comparisons: the default list must build exactly the hand-written UK
    model (the same SQL, labels and term-frequency switches)."""
    from tre_link.link import model
    from tre_link.platform.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "conf" / "demo.yaml")
    built = model.build_settings(cfg.linkage).get_settings("spark").as_dict()["comparisons"]
    expected = [model._nhs_number(model.nhs_number_one_edit()), model._given_name(), model._family_name(),
                model._dob(), model._postcode(), cl.ExactMatch("sex")]
    assert built == [c.get_comparison("spark").as_dict() for c in expected]
    assert [lvl.get("tf_adjustment_column") for lvl in built[1]["comparison_levels"]][:2] == [None, "given_name"]
