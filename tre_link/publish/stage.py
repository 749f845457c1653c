"""The publish stage: one project's research dataset from the linkage zone's person index."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession

from tre_link.ingest.stage import read_standardised
from tre_link.platform.config import JobConfig
from tre_link.platform.delta_io import VersionedTable, read_delta
from tre_link.platform.secrets import load_key
from tre_link.publish.projects import publish_project


@dataclass(frozen=True)
class PublishResult:
    project: str
    research: VersionedTable  # the project's dataset in the research zone


def publish(spark: SparkSession, cfg: JobConfig, project_name: str) -> PublishResult:
    """Write one project's research dataset under its own key."""
    project = cfg.project(project_name)
    project_key = load_key(project.key, purpose=f"project {project.name}")
    person_index = read_delta(spark, cfg.output.person_index_table, table="person_index").df
    research = publish_project(
        person_index=person_index,
        standardised=read_standardised(spark, cfg),
        project=project,
        project_key=project_key,
        output=cfg.output,
    )
    return PublishResult(project=project.name, research=research)
