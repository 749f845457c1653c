"""MLflow tracking end to end on the shared demo run (tests/conftest.py), a second run that links
with the registered model under alias `approved`, and a reproduction of the first run."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tre_link import TreLink
from tre_link.record import tracking
from tre_link.record.registry import resolve_model
from tre_link.record.report import model_parameters, table_checksum

OUTPUT_TABLES = ("links", "person_index")

@pytest.fixture(scope="session")
def run(tracked_run):
    return tracked_run


@pytest.fixture(scope="module")
def client(run):
    """A client on the demo's store: tre-link sets no process-wide tracking URI."""
    uri = run["cfg"].tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture()
def fluent_store(run, monkeypatch):
    """MLflow's fluent API (load_model, download_artifacts) pointed at the demo's store for one test."""
    uri = run["cfg"].tracking_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", uri)


def _record_values(spark, cfg) -> dict[str, set[str]]:
    """Every identifying value in the synthetic inputs, in raw and normalised forms."""
    from pyspark.sql import functions as F

    values: dict[str, set[str]] = {"nhs": set(), "record_id": set(), "name": set(), "postcode": set(), "dob": set()}
    for source in cfg.sources:
        cols = source.columns
        df = spark.read.format("delta").load(source.path)
        picks = {"nhs": cols.nhs_number, "record_id": cols.record_id, "given": cols.given_name,
                 "family": cols.family_name, "postcode": cols.postcode, "dob": cols.dob}
        rows = df.select(*[F.col(c).cast("string").alias(k) for k, c in picks.items() if c]).collect()
        for r in rows:
            d = r.asDict()
            if d.get("nhs"):
                values["nhs"].update({d["nhs"], re.sub(r"\D", "", d["nhs"])})
            if d.get("record_id"):
                values["record_id"].add(d["record_id"])
            if d.get("postcode"):
                values["postcode"].update({d["postcode"].upper(), d["postcode"].upper().replace(" ", "")})
            if d.get("dob"):
                values["dob"].add(d["dob"])
            for part in ("given", "family"):
                if d.get(part):
                    values["name"].add(d[part].upper())
            if d.get("given") and d.get("family"):
                values["name"].add(f"{d['given']} {d['family']}".upper())
    values["nhs"].discard("")
    return values


@pytest.fixture(scope="module")
def record_values(spark, run):
    return _record_values(spark, run["cfg"])


def _all_artifacts(client, run_id, path=None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out.extend(_all_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return out


# ------------------------------------------------------------------------------------------------


def test_params_record_config_hash_and_source_versions(run, client):
    params = client.get_run(run["run_id"]).data.params
    assert params["config_sha256"] == tracking.config_hash(run["config_path"])
    for source in run["cfg"].sources:
        assert params[f"source.{source.name}.version"] == str(run["summary"]["sources"][source.name]["version"])
        assert params[f"source.{source.name}.path"] == source.path
    assert params["opt_outs.version"].isdigit()
    assert re.fullmatch(r"[0-9a-f]{32}", params["output.links.checksum"])
    assert re.fullmatch(r"[0-9a-f]{32}", params["output.person_index.checksum"])


def test_params_record_the_lock_file_sha256_and_package_versions(run, client):
    import hashlib
    import importlib.metadata

    params = client.get_run(run["run_id"]).data.params
    lock = Path(__file__).resolve().parents[1] / params["requirements_lock"]
    assert params["requirements_lock_sha256"] == hashlib.sha256(lock.read_bytes()).hexdigest()
    for package in ("pyspark", "delta-spark", "splink", "mlflow"):
        assert params[f"version.{package}"] == importlib.metadata.version(package)
    installed = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run["run_id"], artifact_path="environment/installed.json", tracking_uri=run["cfg"].tracking_uri,
    )).read_text())
    assert installed["pyspark"] == importlib.metadata.version("pyspark")


def test_library_warnings_are_recorded_with_the_run_in_plain_words(run, client):
    from tre_link.platform.logs import PLAIN_WORDS

    signature = PLAIN_WORDS["infer model signature"]  # MLflow says it whenever the model is registered
    assert signature in run["summary"]["library_warnings"]
    tags = client.get_run(run["run_id"]).data.tags
    assert signature in tags["library_warnings"]
    assert all(w.split(": ", 1)[1].strip() for w in run["summary"]["library_warnings"])  # words after the source


def test_count_metrics_are_released(run, client):
    for run_id in (run["run_id"], run["approved_run_id"]):
        data = client.get_run(run_id).data
        counts = {k: v for k, v in data.metrics.items()
                  if not k.startswith(("wall_seconds", "match_rate.", "completeness.", "pairwise_", "person_"))}
        assert any(k.startswith("subgroup.") for k in counts) and "output.links.rows" in counts
        assert {"estimated_comparisons", "links_deterministic", "links_probabilistic", "gp.records",
                "persons_with_cluster_size.1", "persons_with_cluster_size.2"} <= set(counts)
        for name, value in counts.items():
            assert value == int(value) and value % 5 == 0 and value >= 10, (name, value)
        rates = {k: v for k, v in data.metrics.items() if k.startswith("match_rate.")}
        assert {"match_rate.sex.F", "match_rate.sex.M", "match_rate.source.gp"} <= set(rates)
        for key, rate in rates.items():
            group = key[len("match_rate."):]
            linked, records = data.metrics[f"subgroup.{group}.linked"], data.metrics[f"subgroup.{group}.records"]
            assert rate == pytest.approx(linked / records)  # a rate from released counts only
            assert 0 <= rate <= 1


def test_nothing_record_level_reaches_mlflow(run, record_values, client, fluent_store):
    every = set().union(*record_values.values())
    long_names = {n for n in record_values["name"] if len(n) >= 6}
    identifiers = record_values["nhs"] | record_values["record_id"] | record_values["postcode"] | record_values["dob"]
    assert len(identifiers) > 1000  # the scan has something to find
    for run_id in (run["run_id"], run["approved_run_id"]):
        data = client.get_run(run_id).data
        for key, value in {**data.params, **data.tags}.items():
            assert str(value).upper() not in every, key
            assert key.upper() not in every
        for key, value in data.metrics.items():
            assert str(int(value)) not in record_values["nhs"], key
        artifacts = _all_artifacts(client, run_id)
        names = {Path(a).name for a in artifacts}
        assert {"splink_model.json", "parameters.csv", "match_weights.png", "m_u_parameters.png",
                "completeness.png", "match_weight_histogram.png", "match_rates.png"} <= names
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id))
        for path in local.rglob("*"):
            if not path.is_file() or path.suffix == ".png":
                continue
            text = path.read_text(errors="replace").upper()
            words = set(re.findall(r"[A-Z0-9'.\-/]+", text))
            found = {v for v in identifiers if (v in text if " " in v else v in words)}
            found |= long_names & words
            found |= {v for v in record_values["nhs"] | record_values["record_id"] if len(v) >= 8 and v.upper() in text}
            assert not found, f"{path.name} contains record-level values"


def test_model_parameter_table_matches_model_json(run, fluent_store):
    model_json = run["summary"]["model_json"]
    rows = model_parameters(model_json)
    settings = json.loads(Path(model_json).read_text())
    non_null = sum(1 for c in settings["comparisons"] for lvl in c["comparison_levels"] if not lvl.get("is_null_level"))
    assert len(rows) == non_null
    for r in rows:
        if r["m_probability"] and r["u_probability"]:
            assert r["match_weight"] == pytest.approx(math.log2(r["m_probability"] / r["u_probability"]))
    local = mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path="model/parameters.csv")
    assert len(pd.read_csv(local)) == len(rows)


def test_registered_version_has_candidate_alias_and_pyfunc_predicts(run, spark, client, fluent_store):
    name = run["cfg"].mlflow.registered_model
    mv = client.get_model_version_by_alias(name, "candidate")
    assert str(mv.version) == run["candidate_version"]
    assert client.get_run(run["run_id"]).data.tags["model_version"] == str(mv.version)
    # the registered artifact resolves to the same Splink JSON the run trained
    resolved = resolve_model(f"models:/{name}@candidate", run["cfg"].tracking_uri)
    assert json.loads(Path(resolved).read_text()) == json.loads(Path(run["summary"]["model_json"]).read_text())
    # the pyfunc (logged from code) scores a few standardised records with DuckDB
    std = spark.read.format("delta").load(run["summary"]["tables"]["standardised"]["gp"])
    sample = std.where("nhs_number_status = 'valid'").orderBy("record_id").limit(6).toPandas()
    pairs = sample.copy()
    pairs["record_id"] = pairs["record_id"] + "-copy"  # the same people again: every pair must score high
    model = mlflow.pyfunc.load_model(f"models:/{name}@candidate")
    scored = model.predict(pd.concat([sample, pairs], ignore_index=True))
    assert list(scored.columns) == ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
    same = scored[scored.unique_id_l.str.replace("-copy", "") == scored.unique_id_r.str.replace("-copy", "")]
    assert len(same) == len(sample)
    assert (same.match_probability > 0.99).all()


def test_link_with_approved_model_does_not_train(run, client):
    approved = client.get_run(run["approved_run_id"])
    children = client.search_runs(
        [approved.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run['approved_run_id']}'"
    )
    stages = {c.data.tags["mlflow.runName"] for c in children}
    assert "link" in stages and "train" not in stages
    assert approved.data.tags["model_version"] == run["candidate_version"]
    assert approved.data.tags["model_uri"] == f"models:/{run['cfg'].mlflow.registered_model}/{run['candidate_version']}"
    # the same model on the same inputs links identically
    original = client.get_run(run["run_id"]).data.params
    for table in OUTPUT_TABLES:
        assert approved.data.params[f"output.{table}.checksum"] == original[f"output.{table}.checksum"]


def test_table_checksum_is_order_independent_and_sensitive(spark):
    df = spark.createDataFrame([(1, "a", None), (2, "b", 1.5), (3, None, 2.0)], "x int, y string, z double")
    same = df.orderBy("x", ascending=False).repartition(3)
    assert table_checksum(df) == table_checksum(same)
    changed = spark.createDataFrame([(1, "a", None), (2, "b", 1.5), (3, None, 2.5)], "x int, y string, z double")
    assert table_checksum(df) != table_checksum(changed)
    duplicated = df.unionByName(df.where("x = 1"))
    assert table_checksum(df) != table_checksum(duplicated)
    moved_null = spark.createDataFrame([(1, None, None), (2, "b", 1.5), (3, "a", 2.0)], "x int, y string, z double")
    assert table_checksum(df) != table_checksum(moved_null)


def test_reproduce_reports_identical_and_writes_inside_the_linkage_zone(run, spark):
    result = TreLink(spark, run["config_path"]).reproduce(run["run_id"])
    assert result["config_sha256_matches"]
    assert result["source_versions"] == {n: s["version"] for n, s in run["summary"]["sources"].items()}
    zone, reproduced = Path(run["cfg"].output.linkage_zone).resolve(), Path(result["output_linkage_zone"]).resolve()
    assert reproduced != zone and zone in reproduced.parents
    assert result["identical"], result["tables"]
    assert result["package_differences"] == []  # the same installed software as the run
    for table in OUTPUT_TABLES:
        assert result["tables"][table]["rows"] == result["tables"][table]["logged_rows"]
