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

from conftest import found_record_values, source_values

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


@pytest.fixture(scope="module")
def record_values(spark, run):
    return source_values(spark, run["cfg"])


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
    warnings = run["summary"]["library_warnings"]
    assert warnings, "Splink warns about levels EM could not train on the small demo"
    tags = client.get_run(run["run_id"]).data.tags
    assert all(w in tags["library_warnings"] for w in warnings)
    assert all(w.split(": ", 1)[1].strip() for w in run["summary"]["library_warnings"])  # words after the source


def test_count_metrics_are_released(run, client):
    for run_id in (run["run_id"], run["approved_run_id"]):
        data = client.get_run(run_id).data
        counts = {k: v for k, v in data.metrics.items()
                  if not k.startswith(("wall_seconds", "match_rate.", "completeness.", "pairwise_", "person_", "recall.",
                                       "clerical.precision", "clerical.recall"))}
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


def test_quality_warnings_reach_the_summary_and_mlflow(demo_run, client):
    warnings = demo_run.summary["quality_warnings"]
    assert warnings, "the demo's council source lacks most NHS numbers: a warning"
    assert all(re.fullmatch(r"[a-z_]+\.[a-z_]+: .*\d+%.*", w) for w in warnings)
    tags = client.get_run(demo_run.summary["mlflow"]["run_id"]).data.tags
    assert tags["data_quality_warnings"].startswith(f"{len(warnings)}: ")
    assert any("data quality:" in line for line in demo_run.log_lines)


def test_opted_out_persons_in_the_summary_are_released_counts(run):
    published = run["summary"]["published"]
    assert published and all(p["persons_opted_out"] is None or (p["persons_opted_out"] >= 10
                                                                 and p["persons_opted_out"] % 5 == 0)
                             for p in published.values())


def test_nothing_record_level_reaches_mlflow(run, record_values, client, fluent_store):
    every = set().union(*record_values.values())
    assert len(record_values["nhs"] | record_values["record_id"]) > 1000  # the scan has something to find
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
                "completeness.png", "match_weight_histogram.png", "match_rates.png", "linkage_report.html",
                "linkage_report.pdf", "report.json"} <= names
        local = Path(mlflow.artifacts.download_artifacts(run_id=run_id))
        for path in local.rglob("*"):
            if not path.is_file() or path.suffix in (".png", ".pdf"):
                continue
            text = path.read_text(errors="replace")
            if path.name == "standardise_rules.json":  # reference data: only names the nicknames package lists
                _assert_nickname_reference_only(text)
                continue
            if path.suffix == ".html":  # Splink's charts inline its chart libraries, whose words are not records
                text = _without_splink_libraries(text)
            assert not found_record_values(text, record_values), f"{path.name} contains record-level values"


def _without_splink_libraries(text: str) -> str:
    """The page less the JavaScript libraries Splink ships and inlines: what is left is the chart's own data."""
    import splink

    for library in (Path(splink.__file__).parent / "internals" / "files" / "external_js").iterdir():
        text = text.replace(library.read_text(), "")
    return text


def _assert_nickname_reference_only(text: str) -> None:
    from tre_link.ingest.standardise import nickname_root_pairs

    rules = json.loads(text)
    assert [tuple(p) for p in rules["nickname_roots"]] == list(nickname_root_pairs())
    rest = {k: v for k, v in rules.items() if k != "nickname_roots"}
    assert set(rest) == {"titles", "postcode_pattern", "sex_codes", "dob_formats", "min_dob"}


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
    # (compared with the copy logged with the run: the file in the linkage zone is rewritten by any later training)
    resolved = resolve_model(f"models:/{name}@candidate", run["cfg"].tracking_uri)
    trained = mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path="model/splink_model.json")
    assert json.loads(Path(resolved).read_text()) == json.loads(Path(trained).read_text())
    # the pyfunc (logged from code) standardises plain records itself and scores them with DuckDB
    sample = _raw_records(spark, run["cfg"], "gp", 6)
    copies = sample.assign(record_id=sample["record_id"] + "-copy", source="hospital")
    model = mlflow.pyfunc.load_model(f"models:/{name}@candidate")
    scored = model.predict(pd.concat([sample, copies], ignore_index=True))
    assert list(scored.columns) == ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
    ids = scored[["unique_id_l", "unique_id_r"]].map(lambda u: u.split(":", 1)[1].replace("-copy", ""))
    same = scored[ids.unique_id_l == ids.unique_id_r]
    assert len(same) == len(sample)
    assert (same.match_probability > 0.99).all()


def _raw_records(spark, cfg, source_name: str, n: int) -> pd.DataFrame:
    """n records of a source as the provider sent them, under the model's plain column names."""
    source = next(s for s in cfg.sources if s.name == source_name)
    columns = source.columns.as_dict()
    df = spark.read.format("delta").load(source.path).orderBy(columns["record_id"]).limit(n)
    return df.selectExpr(*[f"cast(`{col}` as string) as {field}" for field, col in columns.items()]).toPandas()


def test_pyfunc_standardises_plain_records_as_the_pipeline_does(run, spark, fluent_store):
    """The model's own pandas standardisation against the Spark stage's, on every record of a source."""
    import json as _json

    from tre_link.record.mlflow_model import standardise
    from tre_link.record.registry import standardise_rules

    cfg = run["cfg"]
    raw = _raw_records(spark, cfg, "hospital", 100_000)
    ours = standardise(raw.assign(source="hospital"), _json.loads(_json.dumps(standardise_rules(cfg))))
    spark_std = spark.read.format("delta").load(cfg.output.standardised_table("hospital")).toPandas()
    merged = ours.merge(spark_std, on="record_id", suffixes=("", "_spark"))
    assert len(merged) == len(spark_std) > 100
    for column in ("nhs_number_digits", "given_name", "given_name_root", "family_name", "family_name_first",
                   "dob", "dob_year", "sex", "postcode", "postcode_sector", "postcode_district",
                   "given_name_phonetic", "family_name_phonetic"):
        left, right = merged[column], merged[f"{column}_spark"]
        if column == "dob_year":  # Spark's ints come back as floats where any is null
            left, right = left.astype("Int64"), right.astype("Int64")
        left, right = left.astype("string").fillna("<null>"), right.astype("string").fillna("<null>")
        agree = (left == right).mean()
        assert agree == 1.0, (column, agree)  # the share that agrees, never the values


def test_registered_model_has_signature_example_exact_requirements_and_a_model_card(run, client, fluent_store):
    from mlflow.models import Model

    name = run["cfg"].mlflow.registered_model
    version = client.get_model_version(name, run["candidate_version"])
    assert version.run_id == run["run_id"]  # the pipeline run, which holds metrics, charts and the report
    card = version.description
    assert "pairwise F1" in card and "report/linkage_report.html" in card and run["run_id"] in card
    local = Path(mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path="splink_pyfunc"))
    meta = Model.load(str(local / "MLmodel"))
    inputs = {c["name"]: c for c in meta.signature.inputs.to_dict()}
    assert {"given_name", "family_name", "dob", "nhs_number", "postcode"} <= set(inputs)
    assert inputs["given_name"]["required"] and not inputs["nhs_number"]["required"]
    assert [c["name"] for c in meta.signature.outputs.to_dict()] == [
        "unique_id_l", "unique_id_r", "match_weight", "match_probability"]
    example = meta.load_input_example(str(local))
    assert len(example) == 2 and set(example.columns) <= set(inputs)
    requirements = (local / "requirements.txt").read_text().split()
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^=<>~]*", r) for r in requirements), requirements
    experiment = client.get_experiment(client.get_run(run["run_id"]).info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "linkage_report.html" in experiment.tags["mlflow.note.content"]


def test_pyfunc_names_missing_columns_without_splink_noise(run, fluent_store, capfd):
    name = run["cfg"].mlflow.registered_model
    model = mlflow.pyfunc.load_model(f"models:/{name}@candidate")
    with pytest.raises(Exception) as err:
        model.predict(pd.DataFrame([{"given_name": "Ada", "postcode": "ZZ99 9ZZ"}]))
    assert "family_name" in str(err.value) and "dob" in str(err.value)
    example = pd.DataFrame(__import__("tre_link.record.registry", fromlist=["x"]).INPUT_EXAMPLE)
    capfd.readouterr()
    scored = model.predict(example)
    assert len(scored) == 1 and scored.match_probability.iloc[0] > 0.5
    printed = capfd.readouterr()
    assert len((printed.out + printed.err).splitlines()) < 5


def test_approve_moves_the_alias_and_records_approver_and_reason(run, spark, client):
    name, version = run["cfg"].mlflow.registered_model, run["candidate_version"]
    result = TreLink(spark, run["cfg"]).approve(version, "F1 and subgroup gaps reviewed", approver="reviewer-a")
    assert result["model_version"] == version and result["previously_approved"] == version
    approved = client.get_model_version_by_alias(name, "approved")
    assert str(approved.version) == version
    assert approved.tags["tre_link.approved_by"] == "reviewer-a"
    assert approved.tags["tre_link.approval_reason"] == "F1 and subgroup gaps reviewed"


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
