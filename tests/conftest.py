"""One SparkSession for the whole test run, built by the project's own factory."""

from __future__ import annotations

import pytest

from tre_link.config import SparkSettings
from tre_link.spark import build_session


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    settings = SparkSettings(
        master="local[2]",
        app_name="tre-link-tests",
        driver_memory="2g",
        shuffle_partitions=1,
        checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
        conf={"spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse"))},
    )
    session = build_session(settings)
    yield session
    session.stop()
