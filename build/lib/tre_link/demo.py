"""The demo: throwaway keys, a synthetic population, then every stage, with no set-up needed.

A real deployment supplies its keys through the environment or a key file; the demo makes
random ones under output.root/keys, outside both zones, and never prints them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

from tre_link.api import RunResult, TreLink, write_summary
from tre_link.platform.config import JobConfig, KeySource
from tre_link.platform.errors import ConfigError
from tre_link.platform.progress import Progress
from tre_link.platform.secrets import write_random_key_file
from tre_link.synth import generate

log = logging.getLogger("tre_link")


def _key_sources(cfg: JobConfig) -> list[KeySource]:
    return ([cfg.linkage_key] if cfg.linkage_key else []) + [p.key for p in cfg.projects]


def ensure_demo_keys(cfg: JobConfig) -> None:
    """Create a random key file for each configured key that has neither its variable nor its file."""
    for source in _key_sources(cfg):
        if os.environ.get(source.env) or (source.file and Path(source.file).exists()):
            continue
        if not source.file:
            raise ConfigError(f"key {source.env}: the demo needs a `file` to write a throwaway key to")
        write_random_key_file(source.file)
        log.info("demo: wrote a throwaway key file for %s", source.env)


def run_demo(spark: SparkSession, cfg: JobConfig, config_path: str) -> RunResult:
    """Throwaway keys, a synthetic population, then `TreLink.run`; the summary names the synthetic tables too."""
    if cfg.synth is None:
        raise ConfigError(f"{config_path}: the demo needs a `synth` section")
    ensure_demo_keys(cfg)
    linker = TreLink(spark, cfg, config_path=config_path)
    progress = Progress(spark, 1 + linker.stage_count())
    with progress.stage(f"synth ({cfg.synth.people:,} people)"):
        generated = generate(spark, cfg.synth)
    result = linker.run(run_name="demo", progress=progress)
    progress.finish()
    synthetic = {"synthetic": {"sources": generated.source_paths, "opt_outs": generated.opt_outs_path,
                               "truth": generated.truth_path}}
    write_summary(cfg, synthetic)
    result.summary.update(synthetic)
    return result
