"""The synthetic generator: determinism, valid NHS numbers, complete truth, Delta output."""

from __future__ import annotations

import nhs_number
import pytest
from chispa import assert_df_equality
from chispa.dataframe_comparer import DataFramesNotEqualError
from pyspark.sql import functions as F

from tre_link.platform.config import SynthConfig
from tre_link.synth.generator import RECORD_ID_COLUMNS, SOURCES, SynthResult, generate, generate_frames

PEOPLE = 400


@pytest.fixture(scope="module")
def written(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(people=PEOPLE, seed=7, output=str(root / "sources"), truth_path=str(root / "truth" / "records"))
    return cfg, generate(spark, cfg)


@pytest.fixture(scope="module")
def frames(spark, written):
    """The tables generate() wrote, read back from Delta (so later tests do not regenerate)."""
    _, result = written
    paths = {**result.source_paths, "opt_outs": result.opt_outs_path, "truth": result.truth_path}
    return {name: spark.read.format("delta").load(path) for name, path in paths.items()}


def test_same_seed_same_rows_whatever_the_partitioning(spark, frames, written):
    cfg, _ = written
    # Regenerated from scratch with another partition count, compared with what generate() wrote.
    again = generate_frames(spark, cfg, partitions=3)
    for name in (*SOURCES, "truth", "opt_outs"):
        assert_df_equality(frames[name], again[name], ignore_row_order=True, ignore_nullable=True)


def test_other_seed_gives_other_rows(spark, frames, written):
    """What makes the check above able to fail: a different seed changes the rows."""
    cfg, _ = written
    other = generate_frames(spark, cfg.model_copy(update={"seed": 8}))["gp"]
    assert frames["gp"].exceptAll(other).count() > 0.9 * frames["gp"].count()
    with pytest.raises(DataFramesNotEqualError):
        assert_df_equality(frames["gp"], other, ignore_row_order=True, ignore_nullable=True)


def test_at_least_three_sources_with_expected_columns(frames):
    assert len(SOURCES) >= 3
    assert frames["gp"].columns == [
        "gp_patient_id", "nhs_no", "forename", "surname", "date_of_birth", "gender", "postcode",
        "ethnic_group", "imd_quintile", "registration_date",
    ]
    assert frames["hospital"].columns == [
        "episode_id", "nhs_number", "first_name", "last_name", "dob", "sex", "postcode",
        "admission_date", "specialty", "ethnic_group", "imd_quintile",
    ]
    assert frames["council"].columns == [
        "case_ref", "nhs_number", "given_name", "family_name", "birth_date", "sex", "post_code",
        "service_type", "ethnic_group", "imd_quintile",
    ]
    assert frames["truth"].columns == ["source", "record_id", "person_id"]
    assert frames["opt_outs"].columns == ["nhs_number"]


def test_source_sizes_are_plausible(frames):
    gp, hospital, council = (frames[s].count() for s in SOURCES)
    assert 0.88 * PEOPLE < gp < 1.02 * PEOPLE
    assert 0.45 * PEOPLE < hospital < 0.95 * PEOPLE
    assert 0.08 * PEOPLE < council < 0.25 * PEOPLE
    people_in_hospital = frames["truth"].where("source = 'hospital'").select("person_id").distinct().count()
    assert people_in_hospital < hospital  # several episodes per person: duplicates within the source


def test_gp_nhs_numbers_pass_modulus_11_by_an_independent_checker(frames):
    values = [r[0] for r in frames["gp"].where(F.col("nhs_no").isNotNull()).select("nhs_no").collect()]
    assert len(values) > 0.9 * PEOPLE
    bad = [v for v in values if not (len(v) == 10 and v.isdigit() and nhs_number.is_valid(v))]
    assert bad == []
    assert not any(v.startswith("999") for v in values)
    assert nhs_number.is_valid("9434765918") is False  # the checker itself can say no


def test_true_nhs_numbers_unique_and_opt_outs_valid(frames):
    truth = frames["truth"]
    gp = frames["gp"].join(truth.where("source = 'gp'"), F.col("gp_patient_id") == F.col("record_id"))
    # The NHS number most often recorded per person is the true one; it is unique per person.
    per_person = gp.where("nhs_no is not null").groupBy("person_id", "nhs_no").count()
    modal = per_person.groupBy("person_id").agg(F.max_by("nhs_no", "count").alias("nhs"))
    assert modal.select("nhs").distinct().count() == modal.count()
    opted = [r[0] for r in frames["opt_outs"].collect()]
    assert all(nhs_number.is_valid(v) for v in opted)
    assert len(set(opted)) == len(opted)


def test_hospital_nhs_numbers_are_spaced_and_dates_parse(spark, frames):
    hospital = frames["hospital"].where("nhs_number is not null")
    assert hospital.where(~F.col("nhs_number").rlike(r"^[0-9]{3} [0-9]{3} [0-9]{4}$")).count() == 0
    parsed = {
        "gp": ("date_of_birth", "yyyy-MM-dd"),
        "hospital": ("dob", "dd/MM/yyyy"),
        "council": ("birth_date", "yyyyMMdd"),
    }
    for source, (column, fmt) in parsed.items():
        df = frames[source].where(F.col(column).isNotNull())
        assert df.where(F.try_to_timestamp(F.col(column), F.lit(fmt)).isNull()).count() == 0, source
    assert set(r[0] for r in frames["gp"].select("gender").distinct().collect()) <= {"M", "F", "U"}
    assert set(r[0] for r in frames["hospital"].select("sex").distinct().collect()) <= {"1", "2", "9"}
    assert set(r[0] for r in frames["council"].select("sex").distinct().collect()) <= {"Male", "Female", None}


def test_record_ids_unique_per_source_and_not_person_ids(frames):
    for source in SOURCES:
        ids = frames[source].select(RECORD_ID_COLUMNS[source])
        assert ids.where(F.col(RECORD_ID_COLUMNS[source]).isNull()).count() == 0
        assert ids.distinct().count() == ids.count(), source
    truth = frames["truth"]
    assert truth.where(F.col("record_id") == F.col("person_id").cast("string")).count() == 0


def test_truth_is_complete_both_ways_and_does_not_leak(frames):
    truth = frames["truth"]
    total = 0
    for source in SOURCES:
        df = frames[source]
        assert "person_id" not in df.columns and "source" not in df.columns
        ids = df.select(F.col(RECORD_ID_COLUMNS[source]).alias("record_id"))
        part = truth.where(F.col("source") == source).select("record_id")
        assert ids.join(part, "record_id", "left_anti").count() == 0, source
        assert part.join(ids, "record_id", "left_anti").count() == 0, source
        total += df.count()
    assert truth.count() == total
    assert truth.select("source", "record_id").distinct().count() == total
    assert truth.where(F.col("person_id").isNull()).count() == 0


def test_skewed_surname_share(spark):
    gp = generate_frames(spark, SynthConfig(people=300, seed=5, skewed_surname_share=0.5))["gp"]
    smiths = gp.where(F.upper("surname") == "SMITH").count()
    assert smiths > 0.4 * gp.count()


def test_generate_writes_delta_tables_with_history(spark, written):
    from delta.tables import DeltaTable

    cfg, result = written
    assert isinstance(result, SynthResult)
    assert result.source_paths == {name: f"{cfg.output}/{name}" for name in SOURCES}
    assert result.opt_outs_path == f"{cfg.output}/opt_outs" and result.truth_path == cfg.truth_path
    for path in [*result.source_paths.values(), result.opt_outs_path, result.truth_path]:
        assert DeltaTable.isDeltaTable(spark, path), path
        history = DeltaTable.forPath(spark, path).history().collect()
        assert [h["version"] for h in history] == [0], path
        assert spark.read.format("delta").option("versionAsOf", 0).load(path).count() > 0, path
