"""bench/altsynth.py: the independent generator of UK-style records (no Spark)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nhs_number
import pandas as pd
import pytest

from bench.altsynth import SOURCES, generate, write_parquet

REPO = Path(__file__).resolve().parents[1]

RECORDS = 5_000
SEED = 11


@pytest.fixture(scope="module")
def pop():
    return generate(records=RECORDS, seed=SEED)


def _present(s: pd.Series) -> pd.Series:
    return s.notna() & (s.fillna("").str.strip() != "")


def _norm(s: pd.Series) -> pd.Series:
    return s.fillna("").str.upper().str.replace(" ", "", regex=False)


@pytest.fixture(scope="module")
def cross_pairs(pop):
    """Every true registry x community pair, registry columns and community columns side by side."""
    truth = pop.truth
    reg = pop.sources["registry"].merge(truth[truth.source == "registry"], left_on="reg_id", right_on="record_id")
    com = pop.sources["community"].merge(truth[truth.source == "community"], left_on="client_ref",
                                         right_on="record_id")
    return reg.merge(com, on="person_id")


def test_same_seed_same_frames_other_seed_differs(pop):
    again = generate(records=RECORDS, seed=SEED)
    for name in SOURCES:
        pd.testing.assert_frame_equal(pop.sources[name], again.sources[name])
    pd.testing.assert_frame_equal(pop.truth, again.truth)
    other = generate(records=RECORDS, seed=SEED + 1)
    for name in SOURCES:
        assert not pop.sources[name].equals(other.sources[name])
    assert not pop.truth.equals(other.truth)


def test_schemas(pop):
    assert set(pop.sources) == set(SOURCES) == {"registry", "community"}
    assert list(pop.sources["registry"].columns) == [
        "reg_id", "nhs_no", "first_names", "surname", "date_birth", "gender", "postcode", "address_1", "uprn",
        "ethnicity"]
    assert list(pop.sources["community"].columns) == [
        "client_ref", "nhs_number", "forename", "family_name", "birth_dt", "sex_code", "post_code", "addr_line",
        "uprn_ref"]
    assert list(pop.truth.columns) == ["source", "record_id", "person_id"]
    for df in (*pop.sources.values(), pop.truth):
        for col in df.columns:
            assert df[col].dropna().map(type).eq(str).all(), col  # text, as a provider sends it


def test_source_sizes_are_60_40(pop):
    for n in (RECORDS, 12_345):
        p = pop if n == RECORDS else generate(records=n, seed=3)
        reg, com = len(p.sources["registry"]), len(p.sources["community"])
        assert reg + com == n
        assert abs(reg / n - 0.6) < 0.01 and abs(com / n - 0.4) < 0.01


def test_truth_complete_both_ways(pop):
    truth = pop.truth
    assert len(truth) == RECORDS
    assert not truth.record_id.duplicated().any()
    assert set(truth.source.unique()) == set(SOURCES)
    for name, id_col in (("registry", "reg_id"), ("community", "client_ref")):
        ids = pop.sources[name][id_col]
        assert not ids.duplicated().any()
        assert set(ids) == set(truth.loc[truth.source == name, "record_id"])
    assert truth.person_id.notna().all()
    assert not set(truth.person_id) & set(truth.record_id)


def test_duplicates_and_overlap(pop):
    counts = pop.truth.groupby(["person_id", "source"]).size().unstack(fill_value=0)
    in_both = (counts["registry"] > 0) & (counts["community"] > 0)
    assert 0.25 < in_both.mean() < 0.6
    reg_people = counts[counts.registry > 0]
    assert 0.05 < (reg_people.registry >= 2).mean() < 0.15  # ~9.5 % of registry people have 2-3 records
    assert (reg_people.registry == 3).any()
    com_people = counts[counts.community > 0]
    assert 0.02 < (com_people.community >= 2).mean() < 0.10


def test_nhs_numbers_valid_unless_typo(pop):
    people = pop.people.set_index("person_id")
    assert not people.nhs_number.duplicated().any()
    assert all(nhs_number.is_valid(x) for x in people.nhs_number)
    assert not people.nhs_number.str.startswith("999").any()
    for name, col, id_col in (("registry", "nhs_no", "reg_id"), ("community", "nhs_number", "client_ref")):
        df = pop.sources[name]
        person = pop.truth.set_index("record_id").person_id.reindex(df[id_col])
        present = _present(df[col]).to_numpy()
        given = df[col][present].str.replace(" ", "", regex=False).to_numpy()
        true = people.nhs_number.reindex(person[present]).to_numpy()
        assert all(len(x) == 10 and x.isdigit() for x in given)
        assert not any(x.startswith("999") for x in given)
        clean = given[given == true]
        assert all(nhs_number.is_valid(x) for x in clean)
        typo = given[given != true]
        assert len(typo) / len(given) < 0.02
        if len(typo):
            assert sum(not nhs_number.is_valid(x) for x in typo) >= 0.8 * len(typo)
    reg = pop.sources["registry"]
    assert 0.02 < 1 - _present(reg.nhs_no).mean() < 0.06
    spaced = pop.sources["community"].nhs_number.str.fullmatch(r"\d{3} \d{3} \d{4}", na=False)
    assert spaced.sum() > 0


def test_community_nhs_mostly_missing(pop):
    missing = 1 - _present(pop.sources["community"].nhs_number).mean()
    assert 0.55 < missing < 0.65


def test_formats(pop):
    reg, com = pop.sources["registry"], pop.sources["community"]
    dob = reg.date_birth.dropna()
    assert dob.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert pd.to_datetime(dob, format="%Y-%m-%d").dt.year.between(1919, 2024).all()
    assert com.birth_dt[_present(com.birth_dt)].str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    assert set(reg.gender.dropna()) == {"M", "F", "U"}
    assert set(com.sex_code.dropna()) == {"1", "2", "9", ""}
    uk = r"[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}"
    assert reg.postcode.dropna().str.fullmatch(uk).all()
    pc = com.post_code[_present(com.post_code)]
    assert pc.str.upper().str.fullmatch(r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}").all()
    assert (pc != pc.str.upper()).any() and (~pc.str.contains(" ")).any()
    assert reg.address_1.dropna().str.fullmatch(r"\d+ [A-Za-z ]+").all()
    assert com.addr_line.str.contains(r"^\d+, ", na=False).any()
    for s in (reg.uprn, com.uprn_ref):
        assert s[_present(s)].str.fullmatch(r"\d{12}").all()
    assert 0.15 < 1 - _present(reg.uprn).mean() < 0.25
    assert 0.35 < 1 - _present(com.uprn_ref).mean() < 0.45
    assert reg.first_names.str.contains(" ", na=False).mean() > 0.08  # middle names
    assert (com.forename.dropna() != com.forename.dropna().str.upper()).any()  # case noise


def test_households_share_address(pop):
    reg = pop.sources["registry"].merge(pop.truth, left_on="reg_id", right_on="record_id")
    per_uprn = reg.dropna(subset=["uprn"]).groupby("uprn").person_id.nunique()
    assert (per_uprn >= 2).mean() > 0.2
    assert per_uprn.max() <= 5  # households have 1-5 people; previous addresses have their own UPRNs


def test_name_frequencies_are_skewed(pop):
    surnames = pop.sources["registry"].surname.dropna().value_counts()
    assert surnames.iloc[0] > 10 * surnames.median()
    assert surnames.size > 150


def test_error_processes_fire(cross_pairs):
    p = cross_pairs
    assert len(p) > 1000
    first = _norm(p.first_names.str.split(" ").str[0])
    given_differs = (first != _norm(p.forename)) & (first != "") & (_norm(p.forename) != "")
    assert given_differs.sum() > 0
    assert 0.03 < given_differs.mean() < 0.30
    surname_differs = (_norm(p.surname) != _norm(p.family_name)) & (_norm(p.family_name) != "")
    assert surname_differs.sum() > 0
    both = (_norm(p.post_code) != "") & (_norm(p.postcode) != "")
    postcode_differs = (_norm(p.postcode) != _norm(p.post_code)) & both
    assert 0.05 < postcode_differs.mean() < 0.35
    d1 = pd.to_datetime(p.date_birth, format="%Y-%m-%d", errors="coerce")
    d2 = pd.to_datetime(p.birth_dt, format="%d/%m/%Y", errors="coerce")
    swapped = (d1.dt.year == d2.dt.year) & (d1.dt.month == d2.dt.day) & (d1.dt.day == d2.dt.month) & (d1 != d2)
    assert swapped.sum() > 0
    assert (d1.notna() & d2.notna() & (d1 != d2)).mean() < 0.08


def test_write_parquet_and_cli(pop, tmp_path):
    paths = write_parquet(pop, tmp_path / "api")
    for name in (*SOURCES, "truth"):
        back = pd.read_parquet(tmp_path / "api" / f"{name}.parquet")
        assert len(back) == len(pop.truth if name == "truth" else pop.sources[name])
    assert set(paths) == {"registry", "community", "truth"}

    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "altsynth.py"), "--records", "3000", "--seed", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["records"] == {"registry": 1800, "community": 1200}
    assert result["people"] > 0 and result["true_pairs"]["total"] > 0
    assert not re.search(r"REG\d|CR\d|P\d{9}|[A-Z]{3,} ", lines[0])  # counts only, no record values
    for name in ("registry", "community", "truth"):
        assert (out / f"{name}.parquet").exists()
