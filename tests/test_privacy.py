"""Keys, keyed hashing in Spark SQL, provider-side pseudonymisation and opt-outs."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest
from pyspark.sql import functions as F

from tre_link.platform.config import KeySource
from tre_link.platform.errors import SecretKeyError
from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns
from tre_link.ingest.optout import opted_out_persons, records_carrying_opt_outs
from tre_link.publish.pseudonymise import pseudonymise_nhs_numbers, pseudonymise_table
from tre_link.platform.secrets import load_key, write_random_key_file

from conftest import printed_key_forms

KEY_HEX = bytes(range(200, 232)).hex()  # 32 bytes, all distinct
KEY = bytes.fromhex(KEY_HEX)
OTHER_KEY = b"another-linkage-key-of-at-least-32-bytes!"

VALID_A = "9434765919"
VALID_B = "4010232137"
VALID_C = "4857773457"


def _hmac(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- load_key


def test_load_key_from_env_hex(monkeypatch):
    monkeypatch.setenv("TRE_TEST_KEY", f"  {KEY_HEX}\n")
    assert load_key(KeySource(env="TRE_TEST_KEY"), purpose="linkage") == KEY


def test_load_key_from_env_text(monkeypatch):
    text = "correct horse battery staple, thirty-two+"
    monkeypatch.setenv("TRE_TEST_KEY", text)
    assert load_key(KeySource(env="TRE_TEST_KEY"), purpose="linkage") == text.encode()


def test_load_key_falls_back_to_file(monkeypatch, tmp_path):
    monkeypatch.delenv("TRE_TEST_KEY", raising=False)
    key_file = tmp_path / "k.hex"
    key_file.write_text(KEY_HEX + "\n")
    assert load_key(KeySource(env="TRE_TEST_KEY", file=str(key_file)), purpose="linkage") == KEY


def test_env_wins_over_file(monkeypatch, tmp_path):
    key_file = tmp_path / "k.hex"
    key_file.write_text("ab" * 40)
    monkeypatch.setenv("TRE_TEST_KEY", KEY_HEX)
    assert load_key(KeySource(env="TRE_TEST_KEY", file=str(key_file)), purpose="linkage") == KEY


def test_missing_key_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("TRE_MISSING_KEY", raising=False)
    with pytest.raises(SecretKeyError, match="TRE_MISSING_KEY") as err:
        load_key(KeySource(env="TRE_MISSING_KEY"), purpose="project alpha")
    assert "refuses to run" in str(err.value)
    absent_file = tmp_path / "nope.key"
    with pytest.raises(SecretKeyError, match="TRE_MISSING_KEY") as err:
        load_key(KeySource(env="TRE_MISSING_KEY", file=str(absent_file)), purpose="project alpha")
    assert str(absent_file) in str(err.value)


def test_empty_env_counts_as_missing(monkeypatch):
    monkeypatch.setenv("TRE_TEST_KEY", "   ")
    with pytest.raises(SecretKeyError, match="TRE_TEST_KEY"):
        load_key(KeySource(env="TRE_TEST_KEY"), purpose="linkage")


@pytest.mark.parametrize("short", ["ab" * 31, "short-secret", "x" * 31])
def test_short_key_refused_without_echo(monkeypatch, short):
    monkeypatch.setenv("TRE_TEST_KEY", short)
    with pytest.raises(SecretKeyError, match="too short") as err:
        load_key(KeySource(env="TRE_TEST_KEY"), purpose="linkage")
    assert short not in str(err.value)
    assert "need at least 32" in str(err.value)


def test_write_random_key_file(tmp_path, monkeypatch):
    path = tmp_path / "keys" / "demo.key"
    write_random_key_file(path)
    text = path.read_text().strip()
    assert len(text) == 64 and all(c in "0123456789abcdef" for c in text)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    monkeypatch.delenv("TRE_TEST_KEY", raising=False)
    assert len(load_key(KeySource(env="TRE_TEST_KEY", file=str(path)), purpose="demo")) == 32
    write_random_key_file(path)
    assert path.read_text().strip() != text


# ---------------------------------------------------------------- HMAC in Spark SQL


def _hashed(df, key):
    return with_keyed_columns(df, key, {"h": hmac_sha256_hex(F.col("v"))}).select("v", "h")


@pytest.mark.parametrize("key", [bytes(range(32)), bytes(range(100, 164)), bytes(range(100)), OTHER_KEY])
def test_hmac_sql_matches_python_hmac(spark, key):
    values = [VALID_A, "", "Zoë Ångström", "x" * 200, "SW1A 1AA"]
    df = spark.createDataFrame([(v,) for v in values] + [(None,)], "v string")
    got = {r.v: r.h for r in _hashed(df, key).collect()}
    for v in values:
        assert got[v] == _hmac(v, key)
    assert got[None] is None


def test_hmac_is_not_plain_sha2(spark):
    df = spark.createDataFrame([(VALID_A,)], "v string")
    token = _hashed(df, KEY).first().h
    assert token != hashlib.sha256(VALID_A.encode()).hexdigest()


def test_hmac_rejects_empty_key(spark):
    df = spark.createDataFrame([(VALID_A,)], "v string")
    with pytest.raises(ValueError):
        _hashed(df, b"")


def test_hmac_key_is_in_no_query_plan(spark):
    """Spark prints literals in the plans it sends to the UI and the event log; the key and its
    pads must not be among them (the demo run's event log is checked in test_key_leaks)."""
    hashed = _hashed(spark.createDataFrame([(VALID_A,)], "v string"), KEY)
    hashed.collect()
    execution = hashed._jdf.queryExecution()
    plans = " ".join(p.toString() for p in (execution.analyzed(), execution.optimizedPlan(), execution.executedPlan()))
    assert "sha2" in plans
    for form in printed_key_forms(KEY):
        assert form not in plans.upper()


# ---------------------------------------------------------------- provider-side pseudonymisation


def _plain_forms(value: str) -> set[str]:
    return {value, hashlib.sha256(value.encode()).hexdigest(), hashlib.sha256(value.encode()).hexdigest().upper()}


def test_pseudonymise_same_number_same_token_across_tables(spark):
    gp = spark.createDataFrame(
        [("g1", "943 476 5919", "ab12"), ("g2", VALID_B, "cd34"), ("g3", "1234", "x"), ("g4", None, None)],
        "id string, nhs string, mrn string",
    )
    hes = spark.createDataFrame([("h1", "943-476-5919"), ("h2", VALID_C)], "id string, nhs string")
    gp_out = {r.id: r for r in pseudonymise_nhs_numbers(gp, "nhs", KEY, extra_columns=["mrn"]).collect()}
    hes_out = {r.id: r for r in pseudonymise_nhs_numbers(hes, "nhs", KEY).collect()}

    assert gp_out["g1"].nhs == hes_out["h1"].nhs == _hmac(VALID_A, KEY)
    assert gp_out["g2"].nhs == _hmac(VALID_B, KEY)
    assert gp_out["g2"].nhs != hes_out["h2"].nhs
    assert gp_out["g3"].nhs is None  # invalid number -> null, not a token of garbage
    assert gp_out["g4"].nhs is None and gp_out["g4"].mrn is None
    assert gp_out["g1"].mrn == _hmac("AB12", KEY)  # trimmed + uppercased then keyed

    forbidden = set().union(*(_plain_forms(v) for v in [VALID_A, VALID_B, VALID_C, "943 476 5919", "943-476-5919"]))
    for row in [*gp_out.values(), *hes_out.values()]:
        assert row.nhs not in forbidden


def test_pseudonymise_differs_by_key(spark):
    df = spark.createDataFrame([(VALID_A,)], "nhs string")
    a = pseudonymise_nhs_numbers(df, "nhs", KEY).first().nhs
    b = pseudonymise_nhs_numbers(df, "nhs", OTHER_KEY).first().nhs
    assert a != b


def test_pseudonymise_table_roundtrip(spark, tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    spark.createDataFrame([("r1", VALID_A, "x"), ("r2", VALID_B, "y")], "id string, nhs string, other string").write.format(
        "delta"
    ).save(src)
    pseudonymise_table(spark, src, dst, "nhs", KEY)
    out = {r.id: r for r in spark.read.format("delta").load(dst).collect()}
    assert out["r1"].nhs == _hmac(VALID_A, KEY)
    assert out["r2"].other == "y"
    for row in out.values():
        for value in row:
            assert value not in _plain_forms(VALID_A) | _plain_forms(VALID_B)


# ---------------------------------------------------------------- opt-outs


def test_records_carrying_opted_out_numbers_plain(spark):
    records = spark.createDataFrame(
        [("a", VALID_A), ("b", VALID_B), ("c", VALID_C), ("d", None)], "record_id string, nhs_number string"
    )
    opt_outs = spark.createDataFrame([("943 476 5919",), ("not-a-number",), (None,), (VALID_A,)], "nhs_number string")
    carrying = records_carrying_opt_outs(records, opt_outs)
    assert sorted(r.record_id for r in carrying.collect()) == ["a"]


def test_records_carrying_opted_out_numbers_tokenised(spark):
    records = spark.createDataFrame(
        [("a", _hmac(VALID_A, KEY)), ("b", _hmac(VALID_B, KEY)), ("c", None)], "record_id string, nhs_number string"
    )
    opt_outs = spark.createDataFrame([(VALID_B,), (VALID_C,)], "nhs_number string")
    carrying = records_carrying_opt_outs(records, opt_outs, linkage_key=KEY)
    assert sorted(r.record_id for r in carrying.collect()) == ["b"]
    # Without the key the plain list matches nothing in tokenised records.
    assert records_carrying_opt_outs(records, opt_outs).count() == 0


def test_opt_out_removes_every_record_of_the_person_even_those_without_a_number(spark):
    # Person P: a GP record with an opted-out number and a council record without any number.
    # Person Q: a record with a number not on the list.
    standardised = spark.createDataFrame(
        [("gp", "g1", VALID_A), ("council", "c1", None), ("gp", "g2", VALID_B), ("council", "c2", None)],
        "source string, record_id string, nhs_number string",
    )
    person_index = spark.createDataFrame(
        [("gp", "g1", "P"), ("council", "c1", "P"), ("gp", "g2", "Q"), ("council", "c2", "R")],
        "source string, record_id string, person_id string",
    )
    opt_outs = spark.createDataFrame([(VALID_A,)], "nhs_number string")
    persons = opted_out_persons(person_index, standardised, opt_outs)
    assert [r.person_id for r in persons.collect()] == ["P"]
    kept = person_index.join(persons, "person_id", "left_anti")
    assert sorted(r.record_id for r in kept.collect()) == ["c2", "g2"]
