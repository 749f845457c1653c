"""No key leaves the job: the demo run's keys appear in no log line, no MLflow record or artifact,
no Delta table it wrote (linkage zone, research zone, sources), and no Spark event log."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import functions as F
from pyspark.sql import types as T

from tre_link.platform.secrets import load_key

from conftest import printed_key_forms


def _keys(cfg) -> dict[str, set[str]]:
    """Each configured key in the forms it could leak in: its text, its bytes as hex, and the forms
    a query plan would print."""
    forms = {}
    for source in [cfg.linkage_key, cfg.person_id_key, *[p.key for p in cfg.projects]]:
        if source is None:
            continue
        key = load_key(source, purpose="test")
        forms[source.env] = {Path(source.file).read_text().strip(), key.hex(), *printed_key_forms(key)}
    return forms


def _delta_tables(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("_delta_log") if p.is_dir())


def test_keys_appear_nowhere(spark, demo_run):
    cfg = demo_run.cfg
    keys = _keys(cfg)
    assert len(keys) == len(cfg.projects) + bool(cfg.linkage_key) + bool(cfg.person_id_key) and len(keys) >= 2

    log_text = "\n".join(demo_run.log_lines)
    assert "link: started" in log_text, "the log capture saw the run"

    root = Path(cfg.output.root)
    mlflow_files = [root / "mlflow.db", *[p for p in (root / "mlartifacts").rglob("*") if p.is_file()]]
    assert (root / "mlflow.db").exists() and len(mlflow_files) > 5
    tables = _delta_tables(root)
    assert any("research" in str(t) for t in tables) and any("person_index" in str(t) for t in tables)

    for env, forms in keys.items():
        for form in forms:
            assert form not in log_text, f"key {env} in the logs"
            for path in mlflow_files:
                assert form.encode() not in path.read_bytes(), f"key {env} in MLflow file {path.name}"
        # The forms go to Spark as data, not literals: a literal would print them into the event
        # log that the next test searches.
        searched = F.broadcast(spark.createDataFrame([(form,) for form in forms], "_key_form string"))
        for table in tables:
            df = spark.read.format("delta").load(str(table))
            strings = [f.name for f in df.schema.fields if isinstance(f.dataType, T.StringType)]
            if strings:
                hit = df.crossJoin(searched).where(
                    F.greatest(*[F.col(c).contains(F.col("_key_form")) for c in strings], F.lit(False))
                )
                assert hit.isEmpty(), f"key {env} in table {table.name}"


def test_keys_appear_in_no_spark_event_log(spark, demo_run):
    """The event log holds the plan of every query the demo run executed, as the Spark UI and a
    history server show them; a key or its HMAC pads printed there would give the key away."""
    log_dir = Path(spark.sparkContext.getConf().get("spark.eventLog.dir").removeprefix("file:"))
    text = "".join(p.read_text(errors="replace") for p in log_dir.rglob("*") if p.is_file()).upper()
    assert "SPARKLISTENERSQLEXECUTIONSTART" in text and "SHA2(CONCAT(" in text, "the log holds the hashing plans"
    for env, forms in _keys(demo_run.cfg).items():
        for form in forms:
            assert form.upper() not in text, f"key {env} in the Spark event log"
