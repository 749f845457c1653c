"""Job configuration: pydantic models loaded from YAML.

Every model forbids unknown keys, so a typo fails before Spark starts, naming the
field and the file. Key *values* never live here: only the names of the environment
variables or key files that hold them.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tre_link.platform.errors import ConfigError
from tre_link.platform.paths import overlap

CANONICAL_FIELDS = ("record_id", "nhs_number", "given_name", "family_name", "dob", "sex", "postcode")
# The fields whose quality is profiled, and the default floor on each mapped one's share of valid values:
# a column with (almost) nothing usable in it is a mapping or extract mistake, not data.
QUALITY_FIELDS = ("nhs_number", "given_name", "family_name", "dob", "sex", "postcode")
DEFAULT_QUALITY_FLOOR = 0.01


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSettings(_Strict):
    master: str = "local[*]"
    app_name: str = "tre-link"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(8, ge=1)
    # Both hold record-level bytes (shuffle and spill files, checkpointed intermediates), so a job's
    # config puts them inside the linkage zone unless they are set (see JobConfig).
    checkpoint_dir: str | None = Field(None, description="Spark checkpoints; default <linkage_zone>/_scratch/checkpoints.")
    local_dir: str | None = Field(
        None, description="spark.local.dir (shuffle, spill, cached blocks) in local mode; default "
        "<linkage_zone>/_scratch/local. On a cluster, the executors' local disks (SPARK_LOCAL_DIRS)."
    )
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "ERROR"
    log_dir: str | None = Field(
        None, description="Where the JVM's own output (Ivy, Spark start-up, log4j) goes instead of the terminal, "
        "in local mode; default <output.root>/logs."
    )
    jars_dir: str | None = Field(
        None, description="Offline install: a local directory of the Delta (and Splink) jars (`make bundle` writes "
        "one). Sessions load every jar in it through spark.jars and resolve nothing through Ivy."
    )
    ui_enabled: bool = False
    conf: dict[str, str] = Field(default_factory=dict, description="Any further spark.* settings.")


class ColumnMapping(_Strict):
    """Source column names for each canonical field. `nhs_number` may be absent."""

    record_id: str
    nhs_number: str | None = None
    given_name: str
    family_name: str
    dob: str
    sex: str
    postcode: str

    def as_dict(self) -> dict[str, str]:
        return {field: getattr(self, field) for field in CANONICAL_FIELDS if getattr(self, field)}


class SourceConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    path: str
    version: int | None = Field(None, ge=0, description="Pinned Delta version; latest when absent.")
    nhs_number_form: Literal["plain", "token"] = "plain"
    columns: ColumnMapping
    passthrough: list[str] = Field(default_factory=list)
    dob_formats: list[str] = Field(default_factory=lambda: ["yyyy-MM-dd", "dd/MM/yyyy", "yyyyMMdd"])
    quality_floors: dict[str, float] = Field(
        default_factory=dict,
        description="Per field, the share of rows with a valid value below which the run stops. Every mapped "
        f"field has a floor of {DEFAULT_QUALITY_FLOOR} unless set here (0 turns the check off).",
    )

    @field_validator("quality_floors")
    @classmethod
    def _known_fields(cls, floors: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(floors) - set(QUALITY_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; floors apply to {list(QUALITY_FIELDS)}")
        if any(not 0 <= v <= 1 for v in floors.values()):
            raise ValueError("floors are shares of rows, from 0 to 1")
        return floors

    def quality_floor(self, field: str) -> float:
        """The floor of a field: as configured, else the default for a mapped field, else 0."""
        if field in self.quality_floors:
            return self.quality_floors[field]
        return DEFAULT_QUALITY_FLOOR if getattr(self.columns, field, None) else 0.0


class OutputConfig(_Strict):
    """Where outputs go. The linkage-zone tables live at fixed places under `linkage_zone`."""

    root: str = "out/demo"
    linkage_zone: str = "out/demo/linkage"
    research_zone: str = "out/demo/research"

    @model_validator(mode="after")
    def _zones_apart(self) -> OutputConfig:
        if overlap(self.linkage_zone, self.research_zone):
            raise ValueError("output.research_zone overlaps output.linkage_zone (zones may neither lie inside "
                             "nor contain each other)")
        return self

    @property
    def summary_path(self) -> Path:
        return Path(self.root) / "summary.json"

    def standardised_table(self, source: str) -> str:
        return f"{self.linkage_zone}/standardised/{source}"

    @property
    def quality_profile_table(self) -> str:
        return f"{self.linkage_zone}/quality_profile"

    @property
    def links_table(self) -> str:
        return f"{self.linkage_zone}/links"

    @property
    def person_index_table(self) -> str:
        return f"{self.linkage_zone}/person_index"

    @property
    def model_json(self) -> str:
        return f"{self.linkage_zone}/model/splink_model.json"

    def research_table(self, project: str) -> str:
        return f"{self.research_zone.rstrip('/')}/{project}/records"

    def reidentified_table(self, request: str) -> str:
        return f"{self.linkage_zone}/reidentified/{request}"

    @property
    def reidentification_audit_table(self) -> str:
        return f"{self.linkage_zone}/reidentification_audit"


class KeySource(_Strict):
    """Where a secret key comes from: an environment variable, else a key file."""

    env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    file: str | None = None


class SynthConfig(_Strict):
    people: int = Field(20_000, ge=10)
    seed: int = 42
    output: str = "out/demo/sources"
    truth_path: str = "out/demo/truth/records"
    opt_out_rate: float = Field(0.02, ge=0, le=1)
    skewed_surname_share: float = Field(0.0, ge=0, le=1, description="Share of people given one surname (skew tests).")


class LinkageConfig(_Strict):
    nhs_number_form: Literal["plain", "token"] = "plain"
    blocking_rules_training: list[str] = Field(min_length=2)
    blocking_rules_predict: list[str] = Field(min_length=1)
    threshold_match_probability: float = Field(0.95, gt=0, lt=1)
    max_comparisons: float = Field(2e8, gt=0, description="Refuse blocking that would exceed this count.")
    max_block_comparisons: int = Field(
        5_000_000, ge=1, description="A blocking key whose block would score more pairs than this is dropped from that rule."
    )
    u_max_pairs: float = Field(5e6, gt=0)
    em_max_pairs: float | None = Field(
        5e5, gt=0, description="Sample EM training pairs down to about this many (EM needs counts of patterns, not all pairs)."
    )
    model: str | None = Field(None, description="Splink JSON path or models:/NAME@ALIAS; trains when absent.")
    term_frequency_columns: list[str] = Field(default_factory=lambda: ["given_name", "family_name"])


class ProjectConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    key: KeySource
    columns: list[str] = Field(min_length=1, description="Approved pass-through columns.")
    dob: Literal["year_month", "age_band", "drop"] = "age_band"
    postcode: Literal["district", "sector", "drop"] = "district"
    age_reference_date: date = Field(date(2026, 1, 1), description="Ages are taken at this date, so reruns agree.")


class ReportConfig(_Strict):
    age_reference_date: date = Field(
        date(2026, 1, 1), description="Subgroup age bands in the run's report are taken at this date, so reruns agree."
    )


class MlflowConfig(_Strict):
    tracking_uri: str | None = Field(None, description="Defaults to a SQLite store under output.root.")
    experiment: str = "tre-link"
    registered_model: str = "tre-link-linkage-model"


class JobConfig(_Strict):
    seed: int = 42
    spark: SparkSettings = Field(default_factory=SparkSettings)
    synth: SynthConfig | None = None
    sources: list[SourceConfig] = Field(min_length=1)
    opt_outs: str | None = Field(None, description="Delta table of NHS numbers (column nhs_number) that opted out.")
    opt_outs_version: int | None = Field(None, ge=0, description="Pinned opt-outs version; latest when absent.")
    truth_path: str | None = None
    output: OutputConfig = Field(default_factory=OutputConfig)
    linkage_key: KeySource | None = None
    linkage: LinkageConfig
    projects: list[ProjectConfig] = Field(default_factory=list)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("sources", "projects")
    @classmethod
    def _unique_names(cls, items: list):
        names = [item.name for item in items]
        if len(names) != len(set(names)):
            raise ValueError(f"names must be unique, got {names}")
        return items

    @model_validator(mode="after")
    def _scratch_in_the_linkage_zone(self) -> JobConfig:
        """Spark's checkpoints and local dir default to inside the linkage zone: they hold records."""
        scratch = f"{self.output.linkage_zone.rstrip('/')}/_scratch"
        defaults = {"checkpoint_dir": f"{scratch}/checkpoints", "local_dir": f"{scratch}/local",
                    "log_dir": f"{self.output.root.rstrip('/')}/logs"}
        missing = {k: v for k, v in defaults.items() if getattr(self.spark, k) is None}
        if not missing:
            return self
        return self.model_copy(update={"spark": self.spark.model_copy(update=missing)})

    @model_validator(mode="after")
    def _zones_apart(self) -> JobConfig:
        """The research zone shares no location with anything identifiable, and the linkage zone
        writes into no source."""
        identifiable = {"output.linkage_zone": self.output.linkage_zone,
                        "spark.checkpoint_dir": self.spark.checkpoint_dir, "spark.local_dir": self.spark.local_dir,
                        "opt_outs": self.opt_outs, "truth_path": self.truth_path,
                        **{f"sources[{s.name}].path": s.path for s in self.sources}}
        problems = [f"output.research_zone overlaps {name}" for name, location in identifiable.items()
                    if location and overlap(location, self.output.research_zone)]
        problems += [f"output.linkage_zone overlaps sources[{s.name}].path" for s in self.sources
                     if overlap(s.path, self.output.linkage_zone)]
        if problems:
            raise ValueError("; ".join(problems) + " (zones may neither lie inside nor contain each other)")
        return self

    def project(self, name: str) -> ProjectConfig:
        for project in self.projects:
            if project.name == name:
                return project
        raise ConfigError(f"no project named {name!r}; configured projects: {[p.name for p in self.projects]}")

    @property
    def tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{(Path(self.output.root) / 'mlflow.db').resolve()}"


def load_config(path: str | Path) -> JobConfig:
    """Read and validate a job YAML; errors name the file and every bad field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"{path}: invalid config: {problems}") from None
