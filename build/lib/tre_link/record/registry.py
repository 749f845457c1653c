"""The MLflow model registry: which model a URI names, and its Splink JSON.

Every call names the store it reads (no process-wide MLflow setting), so one process can work
with several stores."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tre_link.platform.errors import ConfigError

CANDIDATE_ALIAS = "candidate"
APPROVED_ALIAS = "approved"
# Where a registered version's run keeps its pyfunc model, and in it the Splink JSON.
MODEL_ARTIFACT = "splink_pyfunc"
SPLINK_JSON_ARTIFACT = f"{MODEL_ARTIFACT}/artifacts/splink_model.json"


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
