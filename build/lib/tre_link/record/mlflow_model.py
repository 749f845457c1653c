"""The MLflow pyfunc model, logged *from code*: MLflow stores this file (never a pickle) and
the trained Splink JSON as the artifact `splink_model`.

predict(records) takes a pandas DataFrame of standardised records (the columns
`tre_link.ingest.standardise` writes: source, record_id, nhs_number_digits, given_name, ... postcode_district)
and returns the scored candidate pairs: unique_id_l, unique_id_r, match_weight, match_probability.
Scoring uses Splink on DuckDB in-process, so a reviewer can try an approved model on a handful of
records without Spark. The blocking rules come from the model JSON (or params["blocking_rules"]).

This file is self-contained (pandas, duckdb, splink only) so that it loads wherever the model does.
"""

from __future__ import annotations

import json
import logging
import re

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

UNIQUE_ID = "unique_id"
OUTPUT_COLUMNS = ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
# The model is trained on Spark; its SQL uses Spark's quoting and Splink's Spark UDF names.
_SPARK_TO_DUCKDB = {
    r"\bjaro_winkler\(": "jaro_winkler_similarity(",
    r"\bdamerau_levenshtein\(": "damerau_levenshtein(",
    r"\bjaro_sim\(": "jaro_similarity(",
}


def to_duckdb_sql(sql: str) -> str:
    out = sql.replace("`", '"')
    for pattern, replacement in _SPARK_TO_DUCKDB.items():
        out = re.sub(pattern, replacement, out)
    return out


def duckdb_settings(settings: dict) -> dict:
    """A copy of Spark-trained Splink settings that DuckDB can run."""
    settings = json.loads(json.dumps(settings))
    settings["sql_dialect"] = "duckdb"
    settings["linker_uid"] = None
    for comparison in settings.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            level["sql_condition"] = to_duckdb_sql(level["sql_condition"])
    rules = []
    for rule in settings.get("blocking_rules_to_generate_predictions", []):
        if isinstance(rule, dict):
            rule = {**rule, "blocking_rule": to_duckdb_sql(rule["blocking_rule"]), "sql_dialect": "duckdb"}
        else:
            rule = to_duckdb_sql(rule)
        rules.append(rule)
    settings["blocking_rules_to_generate_predictions"] = rules
    return settings


class SplinkPairScorer(PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts["splink_model"]) as f:
            self.settings = json.load(f)

    def _prepare(self, records: pd.DataFrame) -> pd.DataFrame:
        df = records.copy()
        if UNIQUE_ID not in df.columns:
            df[UNIQUE_ID] = df["source"].astype(str) + ":" + df["record_id"].astype(str)
        # The saved blocking rules skip pairs the deterministic NHS pass decided; with no
        # deterministic pass here every blocked pair is scored.
        if "deterministic_nhs" not in df.columns:
            df["deterministic_nhs"] = None
        for column in ("dob_year", "dob_month", "dob_day"):
            if column in df.columns:
                df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
        if "dob" in df.columns:
            df["dob"] = pd.to_datetime(df["dob"], errors="coerce").dt.date
        return df

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from splink import DuckDBAPI, Linker

        params = params or {}
        records = self._prepare(pd.DataFrame(model_input))
        if len(records) < 2:
            return pd.DataFrame(columns=OUTPUT_COLUMNS)
        settings = duckdb_settings(self.settings)
        if params.get("blocking_rules"):
            settings["blocking_rules_to_generate_predictions"] = list(params["blocking_rules"])
        db_api = DuckDBAPI()
        registered = db_api.register(records, table_name="tre_link_records")
        linker = Linker(registered, settings, log_level=logging.WARNING)
        threshold = params.get("threshold_match_probability")
        predictions = linker.inference.predict(threshold_match_probability=threshold).as_pandas_dataframe()
        if predictions.empty:
            return pd.DataFrame(columns=OUTPUT_COLUMNS)
        return predictions[OUTPUT_COLUMNS].reset_index(drop=True)


mlflow.models.set_model(SplinkPairScorer())
