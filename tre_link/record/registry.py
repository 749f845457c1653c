"""The MLflow model registry: which model a URI names, and its Splink JSON.

Every call names the store it reads (no process-wide MLflow setting), so one process can work
with several stores."""

from __future__ import annotations

import getpass
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tre_link.ingest import standardise
from tre_link.platform.config import JobConfig
from tre_link.platform.errors import ConfigError

CANDIDATE_ALIAS = "candidate"
APPROVED_ALIAS = "approved"
# Where a registered version's run keeps its pyfunc model, and in it the Splink JSON.
MODEL_ARTIFACT = "splink_pyfunc"
SPLINK_JSON_ARTIFACT = f"{MODEL_ARTIFACT}/artifacts/splink_model.json"
# The model's input example: two made-up records of one made-up person (a typo in the surname,
# the date written two ways). The NHS number is in the 999 test range, so it is treated as missing.
INPUT_EXAMPLE = [
    {"record_id": "example-1", "source": "gp", "nhs_number": "999 000 0018", "given_name": "Ada",
     "family_name": "Example", "dob": "1911-11-11", "sex": "F", "postcode": "ZZ99 9ZZ"},
    {"record_id": "example-2", "source": "hospital", "nhs_number": "", "given_name": "ADA",
     "family_name": "Exampel", "dob": "11/11/1911", "sex": "2", "postcode": "ZZ999ZZ"},
]


def is_registry_uri(model: str) -> bool:
    return model.startswith("models:/")


def resolve_model(model: str, tracking_uri: str) -> str:
    """A Splink JSON path for a model: a file path as it is, or models:/NAME@ALIAS (or /VERSION)
    downloaded from the registry."""
    if not is_registry_uri(model):
        return model
    # By the version's run: MLflow resolves a models:/ URI against its process-wide registry only.
    run_id = describe_model(model, tracking_uri)["model_run_id"]
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=SPLINK_JSON_ARTIFACT,
                                               tracking_uri=tracking_uri)


def describe_model(uri: str, tracking_uri: str) -> dict:
    """Which model a URI names: models:/NAME@ALIAS or models:/NAME/VERSION is resolved to its registry
    version (so a run records the version it used, not just a moving alias); a file path is identified
    by its SHA-256."""
    if not is_registry_uri(uri):
        if not Path(uri).is_file():
            raise ConfigError(f"model {uri}: no such file (give a Splink JSON path or models:/NAME@ALIAS)")
        return {"model_uri": uri, "model_name": None, "model_version": "file",
                "sha256": hashlib.sha256(Path(uri).read_bytes()).hexdigest()}
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    rest = uri[len("models:/"):]
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = rest.rsplit("/", 1)
            mv = client.get_model_version(name, version)
    except (MlflowException, ValueError) as err:
        raise ConfigError(f"model {uri}: not found in the registry at {tracking_uri} "
                          f"({str(err).splitlines()[0][:200]})") from None
    return {
        "model_uri": f"models:/{mv.name}/{mv.version}",
        "requested_uri": uri,
        "model_name": mv.name,
        "model_version": str(mv.version),
        "aliases": sorted(getattr(mv, "aliases", []) or []),
        "model_run_id": mv.run_id,
        "source": mv.source,
    }


def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def standardise_rules(cfg: JobConfig) -> dict:
    """The pipeline's standardisation rules as the registered model applies them to plain records
    (reference data only: titles, patterns, codes, date formats, nickname roots)."""
    formats = list(dict.fromkeys(f for source in cfg.sources for f in source.dob_formats))
    return {
        "titles": list(standardise.TITLES),
        "postcode_pattern": standardise.POSTCODE_PATTERN,
        "sex_codes": {sex: list(codes) for sex, codes in standardise.SEX_CODES.items()},
        "dob_formats": formats,
        "min_dob": standardise.MIN_DOB.isoformat(),
        "nickname_roots": [list(pair) for pair in standardise.nickname_root_pairs()],
    }


def approved_model(tracking_uri: str, name: str) -> dict | None:
    """describe_model() of the version under alias `approved`, or None when there is none."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.get_model_version_by_alias(name, APPROVED_ALIAS)
    except MlflowException:
        return None  # no such model, or no version approved yet
    return describe_model(f"models:/{name}@{APPROVED_ALIAS}", tracking_uri)


def approve(tracking_uri: str, name: str, version: str, reason: str, approver: str | None = None) -> dict:
    """Move alias `approved` to `version` and record who approved it, when and why (version tags)."""
    if not reason.strip():
        raise ConfigError("approve: give a reason (--reason)")
    client = _client(tracking_uri)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise ConfigError(f"approve: registered model {name!r} has no version {version}") from None
    approver = approver or getpass.getuser()
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    previous = approved_model(tracking_uri, name)
    client.set_registered_model_alias(name, APPROVED_ALIAS, version)
    for key, value in {"tre_link.approved_by": approver, "tre_link.approval_reason": reason,
                       "tre_link.approved_at": when}.items():
        client.set_model_version_tag(name, version, key, value)
    return {**describe_model(f"models:/{name}/{version}", tracking_uri), "approved_by": approver,
            "approval_reason": reason, "approved_at": when,
            "previously_approved": previous["model_version"] if previous else None}


def run_metrics(tracking_uri: str, run_id: str) -> dict[str, float]:
    """A run's logged metrics (released figures), by name."""
    return dict(_client(tracking_uri).get_run(run_id).data.metrics)
