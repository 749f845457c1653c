"""The MLflow pyfunc model, logged *from code*: MLflow stores this file (never a pickle), the
trained Splink JSON (artifact `splink_model`) and the standardisation rules (artifact
`standardise_rules`: titles, postcode pattern, sex codes, date formats, nickname roots, all
reference data from `tre_link.ingest.standardise`, no record).

predict(records) takes plain records, one per row, as a provider would send them:
given_name, family_name, dob (text such as 1980-02-13 or 13/02/1980), and optionally record_id,
source, nhs_number, sex and postcode. It standardises them as the pipeline does (names cleaned and
reduced to their first word, nickname roots, Double Metaphone, NHS number Modulus 11, postcode
parts, date parts) and returns every pair the model's blocking rules admit, scored:
unique_id_l, unique_id_r, match_weight, match_probability.

Two things differ from the pipeline, both on purpose: there is no deterministic NHS-number pass
(every blocked pair is scored), and term-frequency adjustments are off, since a handful of records
says nothing about how common a name is (each level's average u is used instead).

Scoring uses Splink on DuckDB in-process, so a reviewer can try a model on two records without
Spark. This file is self-contained (pandas, duckdb, splink, doublemetaphone) so that it loads
wherever the model does.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

UNIQUE_ID = "unique_id"
OUTPUT_COLUMNS = ["unique_id_l", "unique_id_r", "match_weight", "match_probability"]
REQUIRED_COLUMNS = ("given_name", "family_name", "dob")
OPTIONAL_COLUMNS = ("record_id", "source", "nhs_number", "sex", "postcode")
# The model is trained on Spark; its SQL uses Spark's quoting and Splink's Spark UDF names.
_SPARK_TO_DUCKDB = {
    r"\bjaro_winkler\(": "jaro_winkler_similarity(",
    r"\bdamerau_levenshtein\(": "damerau_levenshtein(",
    r"\bjaro_sim\(": "jaro_similarity(",
}
_STRPTIME = {"yyyy": "%Y", "MM": "%m", "dd": "%d"}


class MissingColumns(ValueError):
    """The input lacks columns the model needs; the message names them and what is accepted."""


def to_duckdb_sql(sql: str) -> str:
    out = sql.replace("`", '"')
    for pattern, replacement in _SPARK_TO_DUCKDB.items():
        out = re.sub(pattern, replacement, out)
    return out


def duckdb_settings(settings: dict) -> dict:
    """A copy of Spark-trained Splink settings that DuckDB can run, without term-frequency adjustments."""
    settings = json.loads(json.dumps(settings))
    settings["sql_dialect"] = "duckdb"
    settings["linker_uid"] = None
    for comparison in settings.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            level["sql_condition"] = to_duckdb_sql(level["sql_condition"])
            level.pop("tf_adjustment_column", None)
            level.pop("tf_adjustment_weight", None)
    rules = []
    for rule in settings.get("blocking_rules_to_generate_predictions", []):
        if isinstance(rule, dict):
            rule = {**rule, "blocking_rule": to_duckdb_sql(rule["blocking_rule"]), "sql_dialect": "duckdb"}
        else:
            rule = to_duckdb_sql(rule)
        rules.append(rule)
    settings["blocking_rules_to_generate_predictions"] = rules
    return settings


# --------------------------------------------------------------------------------------------
# Standardisation in pandas, by the pipeline's own rules (the `standardise_rules` artifact)
# --------------------------------------------------------------------------------------------


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def clean_name(value, titles: frozenset) -> str | None:
    text = _text(value)
    if text is None:
        return None
    text = re.sub(r"['\u2018\u2019`\u00B4]", "", text.upper())
    text = re.sub(r"[^\w ]|[\d_]", " ", text)
    words = [w for w in text.split(" ") if w and w not in titles]
    return " ".join(words) or None


def nhs_digits_and_status(value) -> tuple[str | None, str]:
    text = _text(value)
    digits = re.sub(r"[\s\-./]", "", text.strip()) if text is not None else ""
    if not digits:
        return None, "missing"
    if not re.fullmatch(r"[0-9]{10}", digits):
        return None, "bad_format"
    weighted = sum(int(d) * (10 - i) for i, d in enumerate(digits[:9]))
    if (weighted + int(digits[9])) % 11:
        return digits, "bad_checksum"
    return (None, "test_range") if digits.startswith("999") else (digits, "valid")


def parse_dob(value, formats: list[str], earliest: date) -> date | None:
    if isinstance(value, datetime):
        parsed = value.date()
    elif isinstance(value, date):
        parsed = value
    else:
        text, parsed = (_text(value) or "").strip(), None
        for fmt in formats:
            for java, python in _STRPTIME.items():
                fmt = fmt.replace(java, python)
            try:
                parsed = datetime.strptime(text, fmt).date()
                break
            except ValueError:
                continue
    return parsed if parsed is not None and earliest <= parsed <= date.today() else None


def postcode_parts(value, pattern: str) -> dict:
    squashed = re.sub(r"[\s\u00A0]", "", (_text(value) or "").upper())
    if not re.fullmatch(pattern, squashed):
        return dict.fromkeys(("postcode", "postcode_area", "postcode_district", "postcode_sector"))
    outward, inward = squashed[:-3], squashed[-3:]
    return {"postcode": f"{outward} {inward}", "postcode_area": re.match(r"[A-Z]+", outward).group(0),
            "postcode_district": outward, "postcode_sector": f"{outward} {inward[0]}"}


def standardise(records: pd.DataFrame, rules: dict) -> pd.DataFrame:
    """Plain records to the columns the model compares (see the module docstring)."""
    from doublemetaphone import doublemetaphone

    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise MissingColumns(
            f"records lack column(s) {', '.join(missing)}; the model needs {', '.join(REQUIRED_COLUMNS)} "
            f"and can use {', '.join(OPTIONAL_COLUMNS)}"
        )
    titles, roots = frozenset(rules["titles"]), dict(rules["nickname_roots"])
    sex_codes = {code: sex for sex, codes in rules["sex_codes"].items() for code in codes}
    earliest = date.fromisoformat(rules["min_dob"])

    def phonetic(name):
        return doublemetaphone(name)[0][:4] if name else None  # Splink's Dmetaphone keeps four letters

    rows = []
    for number, record in enumerate(records.to_dict("records")):
        given = clean_name(record.get("given_name"), titles)
        given = given.split(" ")[0] if given else None
        family = clean_name(record.get("family_name"), titles)
        digits, status = nhs_digits_and_status(record.get("nhs_number"))
        dob = parse_dob(record.get("dob"), rules["dob_formats"], earliest)
        source = _text(record.get("source")) or "input"
        record_id = _text(record.get("record_id")) or str(number + 1)
        rows.append({
            UNIQUE_ID: f"{source}:{record_id}", "source": source, "record_id": record_id,
            "nhs_number_digits": digits if status in ("valid", "bad_checksum") else None,
            "given_name": given, "given_name_root": roots.get(given, given) if given else None,
            "given_name_phonetic": phonetic(given), "family_name": family,
            "family_name_first": family.split(" ")[0] if family else None, "family_name_phonetic": phonetic(family),
            "dob": dob, "dob_year": dob.year if dob else None, "dob_month": dob.month if dob else None,
            "dob_day": dob.day if dob else None,
            "sex": sex_codes.get((_text(record.get("sex")) or "").strip().upper()),
            **postcode_parts(record.get("postcode"), rules["postcode_pattern"]),
            # The saved blocking rules skip pairs the deterministic pass decided: here there is none.
            "deterministic_nhs": None,
        })
    out = pd.DataFrame(rows)
    for column in ("dob_year", "dob_month", "dob_day"):
        out[column] = out[column].astype("Int64")
    return out


class SplinkPairScorer(PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts["splink_model"]) as f:
            self.settings = json.load(f)
        with open(context.artifacts["standardise_rules"]) as f:
            self.rules = json.load(f)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from splink import DuckDBAPI, Linker

        params = params or {}
        records = standardise(pd.DataFrame(model_input), self.rules)
        if len(records) < 2:
            return pd.DataFrame(columns=OUTPUT_COLUMNS)
        settings = duckdb_settings(self.settings)
        db_api = DuckDBAPI()
        registered = db_api.register(records, table_name="tre_link_records")
        quiet = logging.getLogger("splink")
        level, quiet.level = quiet.level, logging.ERROR
        try:
            linker = Linker(registered, settings, log_level=logging.ERROR)
            threshold = params.get("threshold_match_probability") or None
            predictions = linker.inference.predict(threshold_match_probability=threshold).as_pandas_dataframe()
        finally:
            quiet.setLevel(level)
        if predictions.empty:
            return pd.DataFrame(columns=OUTPUT_COLUMNS)
        return predictions[OUTPUT_COLUMNS].reset_index(drop=True)


mlflow.models.set_model(SplinkPairScorer())
