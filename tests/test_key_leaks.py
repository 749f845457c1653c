"""No key leaves the job: the demo run's keys appear in no log line, no MLflow record or artifact,
and no Delta table it wrote (linkage zone, research zone, sources)."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import functions as F
from pyspark.sql import types as T

from tre_link.secrets import load_key


def _keys(cfg) -> dict[str, set[str]]:
    """Each configured key in the forms it could leak in: its text, and its bytes as hex."""
    forms = {}
    for source in [cfg.linkage_key, *[p.key for p in cfg.projects]]:
        if source is None:
            continue
        key = load_key(source, purpose="test")
        forms[source.env] = {Path(source.file).read_text().strip(), key.hex()}
    return forms


def _delta_tables(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("_delta_log") if p.is_dir())


def test_keys_appear_nowhere(spark, demo_run):
    cfg = demo_run.cfg
    keys = _keys(cfg)
    assert len(keys) == len(cfg.projects) + (1 if cfg.linkage_key else 0) and len(keys) >= 2

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
            for table in tables:
                df = spark.read.format("delta").load(str(table))
                strings = [f.name for f in df.schema.fields if isinstance(f.dataType, T.StringType)]
                if strings:
                    hit = df.where(F.greatest(*[F.col(c).contains(form) for c in strings], F.lit(False)))
                    assert hit.isEmpty(), f"key {env} in table {table.name}"
