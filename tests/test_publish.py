"""Research extracts: per-project pseudonyms, generalisation, approved columns only, no key leaks."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import date

import pytest

from tre_link.platform.config import KeySource, OutputConfig, ProjectConfig
from tre_link.platform.errors import ConfigError
from tre_link.publish.projects import build_research_records, publish_project

PROJECT_KEY_A = bytes.fromhex("a1" * 32)
PROJECT_KEY_B = bytes.fromhex("b2" * 32)
LINKAGE_KEY = bytes.fromhex("c3" * 32)

STD_SCHEMA = (
    "source string, record_id string, nhs_number string, nhs_number_status string, given_name string, "
    "given_name_root string, given_name_phonetic string, family_name string, family_name_first string, "
    "family_name_phonetic string, dob date, dob_year int, dob_month int, dob_day int, sex string, postcode string, "
    "postcode_area string, postcode_district string, postcode_sector string, ethnic_group string, "
    "imd_quintile int, admission_date date"
)

# (source, record_id, nhs_number, given, family, dob, sex, postcode, area, district, sector, ethnic, imd, admitted)
PEOPLE = [
    ("gp", "gp-1", "9434765919", "AMELIA", "OKAFOR", date(1985, 6, 15), "F", "LS1 4AP", "LS", "LS1", "LS1 4", "A", 2, None),
    ("hes", "hes-7", "9434765919", "AMELIA", "OKAFOR", date(1985, 6, 15), "F", "LS1 4AP", "LS", "LS1", "LS1 4", None, 2, date(2024, 3, 1)),
    ("gp", "gp-2", "4010232137", "JOHN", "SMITH", date(1986, 1, 1), "M", "M13 9PL", "M", "M13", "M13 9", "B", 5, None),
    ("gp", "gp-3", None, "PRIYA", "PATEL", date(1986, 1, 2), "F", "B15 2TT", "B", "B15", "B15 2", "C", 1, None),
    ("hes", "hes-8", "4857773457", "ARTHUR", "JONES", date(1936, 1, 1), "M", "CF10 3AT", "CF", "CF10", "CF10 3", None, 3, date(2025, 7, 9)),
    ("hes", "hes-9", "6000000014", "EDITH", "JONES", date(1936, 1, 2), "F", "CF10 3AT", "CF", "CF10", "CF10 3", None, 3, date(2025, 8, 9)),
    ("gp", "gp-4", "7000000058", "WILF", "BROWN", None, "M", "EH1 1YZ", "EH", "EH1", "EH1 1", "A", 4, None),
]
PERSON_ID = {"gp-1": "P0001", "hes-7": "P0001", "gp-2": "P0002", "gp-3": "P0003", "hes-8": "P0004", "hes-9": "P0005", "gp-4": "P0006"}
EXPECTED_AGE_BAND = {"gp-1": "40-44", "hes-7": "40-44", "gp-2": "40-44", "gp-3": "35-39", "hes-8": "90+", "hes-9": "85-89", "gp-4": None}


def _std_row(p):
    source, rid, nhs, given, family, dob, sex, pc, area, district, sector, ethnic, imd, admitted = p
    return (
        source, rid, nhs, "valid" if nhs else "missing", given, given, given[:3] + "PH", family, family,
        family[:3] + "PH", dob, dob and dob.year, dob and dob.month, dob and dob.day, sex, pc, area, district,
        sector, ethnic, imd, admitted,
    )


@pytest.fixture(scope="module")
def inputs(spark):
    standardised = spark.createDataFrame([_std_row(p) for p in PEOPLE], STD_SCHEMA)
    sizes = {pid: list(PERSON_ID.values()).count(pid) for pid in PERSON_ID.values()}
    person_index = spark.createDataFrame(
        [(p[0], p[1], PERSON_ID[p[1]], sizes[PERSON_ID[p[1]]], "deterministic") for p in PEOPLE],
        "source string, record_id string, person_id string, cluster_size int, link_method string",
    )
    return person_index, standardised


def _project(name="alpha", *, columns=("ethnic_group", "imd_quintile"), dob="age_band", postcode="district", env="ALPHA_KEY"):
    return ProjectConfig(
        name=name, key=KeySource(env=env), columns=list(columns), dob=dob, postcode=postcode,
        age_reference_date=date(2026, 1, 1),
    )


def _output(tmp_path):
    return OutputConfig(
        root=str(tmp_path), linkage_zone=str(tmp_path / "linkage"), research_zone=str(tmp_path / "research")
    )


def _publish(spark, inputs, tmp_path, project, key):
    person_index, standardised = inputs
    written = publish_project(
        person_index=person_index, standardised=standardised, project=project, project_key=key,
        output=_output(tmp_path),
    )
    return written.path, written.df


def _hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _keyed(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def test_output_path_schema_and_values(spark, inputs, tmp_path):
    path, df = _publish(spark, inputs, tmp_path, _project(), PROJECT_KEY_A)
    assert path == f"{tmp_path / 'research'}/alpha/records"
    assert df.columns == ["person_key", "source", "age_band", "sex", "postcode_district", "ethnic_group", "imd_quintile"]
    rows = df.collect()
    assert len(rows) == len(PEOPLE)
    by_key_source = {}
    for rid, pid in PERSON_ID.items():
        by_key_source.setdefault((_keyed(pid, PROJECT_KEY_A), rid.split("-")[0]), []).append(rid)
    for row in rows:
        rids = by_key_source[(row.person_key, row.source)]
        assert {EXPECTED_AGE_BAND[r] for r in rids} == {row.age_band}
    # Both records of person P0001 share one key; different people differ.
    keys = {(r.source, r.postcode_district, r.ethnic_group): r.person_key for r in rows}
    assert keys[("gp", "LS1", "A")] == keys[("hes", "LS1", None)]
    assert len({r.person_key for r in rows}) == len(set(PERSON_ID.values()))


def test_year_month_and_sector(spark, inputs, tmp_path):
    project = _project("beta", columns=["admission_date"], dob="year_month", postcode="sector")
    _, df = _publish(spark, inputs, tmp_path, project, PROJECT_KEY_A)
    assert df.columns == ["person_key", "source", "dob_year_month", "sex", "postcode_sector", "admission_date"]
    got = sorted((r.dob_year_month or "", r.postcode_sector) for r in df.collect())
    assert got == sorted(
        [("1985-06", "LS1 4"), ("1985-06", "LS1 4"), ("1986-01", "M13 9"), ("1986-01", "B15 2"),
         ("1936-01", "CF10 3"), ("1936-01", "CF10 3"), ("", "EH1 1")]
    )


def test_drop_dob_and_postcode(spark, inputs, tmp_path):
    project = _project("gamma", columns=["imd_quintile"], dob="drop", postcode="drop")
    _, df = _publish(spark, inputs, tmp_path, project, PROJECT_KEY_A)
    assert df.columns == ["person_key", "source", "sex", "imd_quintile"]


def _identifier_forms(linkage_key: bytes) -> set[str]:
    """Every input identifier in plain form, as plain SHA-256 hex and as a linkage-key HMAC token."""
    plain = set()
    for p in PEOPLE:
        source, rid, nhs, given, family, dob, sex, pc, *_ = p
        plain |= {rid, given, family, pc, pc.replace(" ", ""), given[:3] + "PH", family[:3] + "PH"}
        if nhs:
            plain.add(nhs)
        if dob:
            plain |= {dob.isoformat(), dob.strftime("%d/%m/%Y"), dob.strftime("%Y%m%d")}
    plain |= set(PERSON_ID.values())
    forms = set(plain)
    for value in plain:
        forms |= {_hex(value), _hex(value).upper(), _keyed(value, linkage_key)}
    return forms


def test_irreversibility_no_output_value_is_an_identifier_or_its_hash(spark, inputs, tmp_path):
    forbidden = _identifier_forms(LINKAGE_KEY)
    for project in [_project(), _project("beta", columns=["admission_date"], dob="year_month", postcode="sector")]:
        _, df = _publish(spark, inputs, tmp_path, project, PROJECT_KEY_A)
        for row in df.collect():
            for column, value in row.asDict().items():
                assert value is None or str(value) not in forbidden, f"{project.name}.{column} holds an identifier form"
        # and none of the identifying columns made it through
        assert not {"nhs_number", "record_id", "person_id", "given_name", "family_name", "postcode", "dob",
                    "cluster_size", "link_method", "dob_day"} & set(df.columns)


def test_per_project_unlinkability(spark, inputs, tmp_path):
    _, a = _publish(spark, inputs, tmp_path, _project("alpha"), PROJECT_KEY_A)
    _, b = _publish(spark, inputs, tmp_path, _project("beta", env="BETA_KEY"), PROJECT_KEY_B)
    keys_a = {r.person_key for r in a.collect()}
    keys_b = {r.person_key for r in b.collect()}
    assert len(keys_a) == len(keys_b) == len(set(PERSON_ID.values()))
    assert not keys_a & keys_b


def test_stable_within_project(spark, inputs, tmp_path):
    _, first = _publish(spark, inputs, tmp_path, _project(), PROJECT_KEY_A)
    first_rows = sorted(tuple(r) for r in first.collect())
    _, again = _publish(spark, inputs, tmp_path / "rerun", _project(), PROJECT_KEY_A)
    assert sorted(tuple(r) for r in again.collect()) == first_rows
    assert {r.person_key for r in first.collect()} == {_keyed(p, PROJECT_KEY_A) for p in PERSON_ID.values()}


def test_missing_project_column_is_a_clear_error(spark, inputs):
    person_index, standardised = inputs
    with pytest.raises(ConfigError, match=r"alpha.*not_a_column"):
        build_research_records(
            person_index=person_index, standardised=standardised,
            project=_project(columns=["ethnic_group", "not_a_column"]), project_key=PROJECT_KEY_A,
        )


@pytest.mark.parametrize("bad", ["nhs_number", "given_name", "postcode", "dob", "record_id", "family_name_phonetic"])
def test_identifier_cannot_be_approved(spark, inputs, bad):
    person_index, standardised = inputs
    with pytest.raises(ConfigError, match=bad):
        build_research_records(
            person_index=person_index, standardised=standardised, project=_project(columns=[bad]),
            project_key=PROJECT_KEY_A,
        )


def test_research_path_inside_linkage_zone_refused(spark, inputs, tmp_path):
    person_index, standardised = inputs
    sneaky = OutputConfig.model_construct(
        root=str(tmp_path), linkage_zone=str(tmp_path / "linkage"), research_zone=str(tmp_path / "linkage" / "research")
    )
    with pytest.raises(ConfigError, match="linkage zone"):
        publish_project(
            person_index=person_index, standardised=standardised, project=_project(),
            project_key=PROJECT_KEY_A, output=sneaky,
        )
    # also caught through a relative path that resolves inside the zone
    dotted = OutputConfig.model_construct(
        root=str(tmp_path), linkage_zone=str(tmp_path / "linkage"), research_zone=str(tmp_path / "x" / ".." / "linkage")
    )
    with pytest.raises(ConfigError, match="linkage zone"):
        publish_project(
            person_index=person_index, standardised=standardised, project=_project(),
            project_key=PROJECT_KEY_A, output=dotted,
        )
    assert not (tmp_path / "linkage").exists()


def test_key_never_leaks_into_output_or_logs(spark, inputs, tmp_path, caplog, capsys):
    key_text = "this-project-key-is-plain-text-and-long-enough"
    key = key_text.encode()
    needles = {key_text, key.hex(), key.hex().upper(), PROJECT_KEY_A.hex()}
    with caplog.at_level(logging.DEBUG):
        _, df = _publish(spark, inputs, tmp_path, _project(), key)
        _, df_hex = _publish(spark, inputs, tmp_path / "hex", _project(), PROJECT_KEY_A)
    for table in (df, df_hex):
        string_columns = [f.name for f in table.schema.fields if f.dataType.simpleString() == "string"]
        assert "person_key" in string_columns
        for row in table.select(*string_columns).collect():
            for value in row:
                if value is not None:
                    for needle in needles:
                        assert needle not in value
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    for needle in needles:
        assert needle not in logged
    # the person ids must not be logged either
    for pid in PERSON_ID.values():
        assert pid not in logged


HOUSEHOLD_OF = {"P0001": "uprn:100023336956", "P0004": "uprn:200004199765", "P0005": "uprn:200004199765"}
ADDRESS_OF = {"P0001": "12 PARK ROW", "P0004": "3 QUEEN STREET", "P0005": "3 QUEEN STREET"}


def _with_households(spark, inputs):
    """The fixture's records with a UPRN and an address on the persons who have a household, and
    the household_index those give."""
    person_index, standardised = inputs
    pid = {rid: p for rid, p in PERSON_ID.items()}
    extra = spark.createDataFrame(
        [(rid, HOUSEHOLD_OF.get(p, "uprn:")[5:] or None, ADDRESS_OF.get(p)) for rid, p in pid.items()],
        "record_id string, uprn string, address string")
    households = spark.createDataFrame(
        [(p, h, "uprn", 1) for p, h in HOUSEHOLD_OF.items()],
        "person_id string, household_id string, household_basis string, records int")
    return person_index, standardised.join(extra, "record_id"), households


def test_household_keys_differ_between_projects_and_no_uprn_or_address_is_published(spark, inputs):
    person_index, standardised, households = _with_households(spark, inputs)
    published = {}
    for name, key in (("alpha", PROJECT_KEY_A), ("beta", PROJECT_KEY_B)):
        project = _project(name).model_copy(update={"household_key": True})
        df = build_research_records(person_index=person_index, standardised=standardised, project=project,
                                    project_key=key, households=households)
        assert df.columns[:3] == ["person_key", "household_key", "source"]
        published[name] = df.collect()
        expected = {_keyed(p, key): (_keyed("household|" + HOUSEHOLD_OF[p], key) if p in HOUSEHOLD_OF else None)
                    for p in set(PERSON_ID.values())}
        assert {(r.person_key, r.household_key) for r in published[name]} == set(expected.items())
    # One household (P0004 and P0005) shares a key within a project; no key is shared across projects.
    alpha = {r.household_key for r in published["alpha"]} - {None}
    beta = {r.household_key for r in published["beta"]} - {None}
    assert len(alpha) == len(beta) == 2
    assert not alpha & beta
    # Neither the UPRN nor the address, nor the linkage zone's household id, in any published value.
    secrets = {*HOUSEHOLD_OF.values(), *(h[5:] for h in HOUSEHOLD_OF.values()), *ADDRESS_OF.values()}
    values = {str(v) for rows in published.values() for r in rows for v in r}
    assert not {s for s in secrets for v in values if s in v}


def test_household_key_without_household_index_is_refused(spark, inputs):
    person_index, standardised = inputs
    project = _project().model_copy(update={"household_key": True})
    with pytest.raises(ConfigError, match="household_index"):
        build_research_records(person_index=person_index, standardised=standardised, project=project,
                               project_key=PROJECT_KEY_A)


def test_uprn_address_and_household_id_cannot_be_approved_for_publishing(spark, inputs):
    person_index, standardised, _ = _with_households(spark, inputs)
    for column in ("uprn", "address", "household_id"):
        with pytest.raises(ConfigError, match="identify people or records"):
            build_research_records(person_index=person_index, standardised=standardised.withColumn("household_id", standardised.uprn),
                                   project=_project(columns=[column]), project_key=PROJECT_KEY_A)
