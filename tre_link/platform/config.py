"""Job configuration: pydantic models loaded from YAML.

Every model forbids unknown keys, so a typo fails before Spark starts, naming the
field and the file. Key *values* never live here: only the names of the environment
variables or key files that hold them.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Literal

import sqlglot
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tre_link.platform.errors import ConfigError
from tre_link.platform.paths import overlap

CANONICAL_FIELDS = (
    "record_id", "nhs_number", "given_name", "family_name", "dob", "sex", "postcode", "address", "uprn",
)
# The fields whose quality is profiled, and the default floor on each mapped one's share of valid values:
# a column with (almost) nothing usable in it is a mapping or extract mistake, not data.
QUALITY_FIELDS = ("nhs_number", "given_name", "family_name", "dob", "sex", "postcode", "address", "uprn")
DEFAULT_QUALITY_FLOOR = 0.01

# What kind of value each field holds once standardised: a comparison preset accepts some kinds only.
# A source's other identifiers (`columns.identifiers`) are all of kind "identifier".
FIELD_KINDS = {
    "nhs_number": "nhs_number", "given_name": "name", "family_name": "name", "dob": "date", "sex": "code",
    "postcode": "postcode", "address": "text", "uprn": "identifier",
}
_ANY_KIND = frozenset({"nhs_number", "name", "date", "code", "postcode", "text", "identifier"})
# Each preset, and the field kinds it may compare. uk_given_name and uk_family_name read the derived
# columns only those two fields have (nickname root, phonetic code, first part of a double-barrelled name).
PRESET_KINDS: dict[str, frozenset[str]] = {
    # UK health: today's comparisons, level for level
    "nhs_number": frozenset({"nhs_number"}),
    "uk_given_name": frozenset({"name"}),
    "uk_family_name": frozenset({"name"}),
    "uk_dob": frozenset({"date"}),
    "uk_postcode": frozenset({"postcode"}),
    "sex": frozenset({"code"}),
    # generic
    "exact": _ANY_KIND,
    "name": frozenset({"name", "identifier", "text"}),
    "date": frozenset({"date"}),
    "address": frozenset({"text"}),
    "id": frozenset({"identifier", "nhs_number"}),
    "postcode_plain": frozenset({"postcode", "identifier"}),
}
PRESET_FIELDS = {"uk_given_name": "given_name", "uk_family_name": "family_name"}
Preset = Literal["nhs_number", "uk_given_name", "uk_family_name", "uk_dob", "uk_postcode", "sex", "exact", "name",
                 "date", "address", "id", "postcode_plain"]
# Column names standardisation and linkage derive: no identifier field may take one.
STANDARD_COLUMN_NAMES = frozenset({
    "source", "nhs_number_status", "nhs_number_digits", "given_name_root", "given_name_phonetic",
    "family_name_first", "family_name_phonetic", "dob_year", "dob_month", "dob_day", "postcode_area",
    "postcode_district", "postcode_sector", "dob_raw_present", "sex_raw_present", "postcode_raw_present",
    "uprn_raw_present", "unique_id", "deterministic_nhs", "nhs_dob_conflict", "person_id", "match_key",
})


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
    """Source column names for each canonical field. Only `record_id` is required: a source maps the
    fields it has, and the others are null in its standardised records (the model's null level).

    `address` is one column or several (address lines, joined in order); `identifiers` maps further
    identifiers of the source's own (a social-security id, a school pupil number) by the field name
    the model's comparisons use to the source column holding it."""

    record_id: str
    nhs_number: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    dob: str | None = None
    sex: str | None = None
    postcode: str | None = None
    address: str | list[str] | None = None
    uprn: str | None = None
    identifiers: dict[str, str] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _address_lines(cls, address):
        if isinstance(address, list) and not address:
            raise ValueError("give at least one address column, or leave address out")
        return address

    @field_validator("identifiers")
    @classmethod
    def _identifier_names(cls, identifiers: dict[str, str]) -> dict[str, str]:
        bad = [name for name in identifiers if not re.fullmatch(r"[a-z][a-z0-9_]*", name)]
        if bad:
            raise ValueError(f"identifier field names must be lower case letters, digits and _: {bad}")
        return identifiers

    def address_columns(self) -> list[str]:
        if self.address is None:
            return []
        return [self.address] if isinstance(self.address, str) else list(self.address)

    def as_dict(self) -> dict[str, str]:
        """Field -> source column, for every mapped single-column field (address lines are in
        `address_columns`, identifiers in `identifiers`)."""
        return {field: getattr(self, field) for field in CANONICAL_FIELDS
                if field != "address" and getattr(self, field)}

    def source_columns(self) -> dict[str, str]:
        """Every source column the mapping reads, each with the field it feeds (for error messages)."""
        columns = {column: field for field, column in self.as_dict().items()}
        columns.update({column: "address" for column in self.address_columns()})
        columns.update({column: name for name, column in self.identifiers.items()})
        return columns

    def mapped_fields(self) -> set[str]:
        mapped = set(self.as_dict()) | set(self.identifiers)
        return mapped | ({"address"} if self.address is not None else set())


class SourceConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    path: str
    version: int | None = Field(None, ge=0, description="Pinned Delta version; latest when absent.")
    nhs_number_form: Literal["plain", "token"] = "plain"
    postcode_form: Literal["uk", "plain"] = Field(
        "uk", description="uk: validated UK postcodes with district and sector; plain: any postcode, upper case "
        "without spaces (other countries), compared with the postcode_plain preset.")
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
        return DEFAULT_QUALITY_FLOOR if field in self.columns.mapped_fields() else 0.0

    @model_validator(mode="after")
    def _identifier_names_free(self) -> SourceConfig:
        clashes = sorted(set(self.columns.identifiers) & (set(CANONICAL_FIELDS) | STANDARD_COLUMN_NAMES))
        if clashes:
            raise ValueError(f"columns.identifiers: {clashes} clash with standard field or column names")
        return self


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
    def person_events_table(self) -> str:
        """Every change to the person index (new, joined, merged, split, retired, record_removed), by generation."""
        return f"{self.linkage_zone}/person_events"

    @property
    def household_index_table(self) -> str:
        """Each person's household (from UPRNs, else addresses with postcodes) at the link's extracts."""
        return f"{self.linkage_zone}/household_index"

    @property
    def model_json(self) -> str:
        return f"{self.linkage_zone}/model/splink_model.json"

    @property
    def scored_pairs_table(self) -> str:
        """Every pair the probabilistic pass scored: the population clerical review samples from."""
        return f"{self.linkage_zone}/scored_pairs"

    @property
    def review_sample_table(self) -> str:
        """Pairs drawn for clerical review, with both records' identifiers (record-level)."""
        return f"{self.linkage_zone}/review/sample"

    @property
    def review_dir(self) -> str:
        """The labelling page and CSV of each review sample (record-level: they stay here)."""
        return f"{self.linkage_zone}/review"

    @property
    def clerical_labels_table(self) -> str:
        """Reviewers' labels, kept across runs so every new model is scored on the same pairs."""
        return f"{self.linkage_zone}/clerical_labels"

    @property
    def report_html_path(self) -> Path:
        """The run's linkage report (released figures only), beside summary.json."""
        return Path(self.root) / "linkage_report.html"

    @property
    def report_pdf_path(self) -> Path:
        return Path(self.root) / "linkage_report.pdf"

    def research_table(self, project: str) -> str:
        return f"{self.research_zone.rstrip('/')}/{project}/records"

    def key_events_table(self, project: str) -> str:
        """How the project's person keys changed (merges, splits, retirements), from person_events."""
        return f"{self.research_zone.rstrip('/')}/{project}/key_events"

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


class LevelConfig(_Strict):
    """A custom comparison level: a Splink SQL condition on `<column>_l` and `<column>_r`."""

    sql: str = Field(min_length=1)
    label: str = Field(min_length=1)

    @field_validator("sql")
    @classmethod
    def _parses(cls, sql: str) -> str:
        try:
            parsed = sqlglot.parse_one(sql, read="spark")
        except sqlglot.errors.SqlglotError as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"level SQL does not parse as Spark SQL ({first})") from None
        if isinstance(parsed, (sqlglot.exp.Query, sqlglot.exp.Command, sqlglot.exp.DDL, sqlglot.exp.DML)) or ";" in sql:
            raise ValueError("level SQL must be one condition (as in a CASE WHEN), not a statement")
        return sql


class ComparisonConfig(_Strict):
    """One field the model compares: a preset, or custom levels (Splink SQL), never both.

    Custom levels come between the null level (the field null on either side) and the else level,
    which are added. `term_frequency` adjusts the exact-match level by how common the value is.
    `decisive` exempts the comparison from `linkage.weight_floor`."""

    field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    preset: Preset | None = None
    levels: list[LevelConfig] | None = Field(None, min_length=1)
    term_frequency: bool = False
    decisive: bool = False

    @model_validator(mode="after")
    def _preset_or_levels(self) -> ComparisonConfig:
        if (self.preset is None) == (self.levels is None):
            raise ValueError(f"comparison on {self.field}: give either a preset or levels")
        if self.levels is not None and self.term_frequency:
            raise ValueError(f"comparison on {self.field}: term_frequency applies to a preset's exact-match level; "
                             "custom levels have none")
        wanted = PRESET_FIELDS.get(self.preset or "")
        if wanted and self.field != wanted:
            raise ValueError(f"preset {self.preset} compares {wanted} only, not {self.field}")
        kind = FIELD_KINDS.get(self.field, "identifier")
        if self.preset and kind not in PRESET_KINDS[self.preset]:
            raise ValueError(f"preset {self.preset} cannot compare {self.field} (a field of kind {kind}); "
                             f"it takes kinds {sorted(PRESET_KINDS[self.preset])}")
        return self


def default_comparisons() -> list[ComparisonConfig]:
    """The UK-health model: NHS number, names (term-frequency adjusted), DOB, UK postcode, sex."""
    return [
        ComparisonConfig(field="nhs_number", preset="nhs_number"),
        ComparisonConfig(field="given_name", preset="uk_given_name", term_frequency=True),
        ComparisonConfig(field="family_name", preset="uk_family_name", term_frequency=True),
        ComparisonConfig(field="dob", preset="uk_dob"),
        ComparisonConfig(field="postcode", preset="uk_postcode"),
        ComparisonConfig(field="sex", preset="sex"),
    ]


class LinkageConfig(_Strict):
    nhs_number_form: Literal["plain", "token"] = "plain"
    blocking_rules_training: list[str] = Field(min_length=2)
    blocking_rules_predict: list[str] = Field(min_length=1)
    threshold_match_probability: float | Literal["auto"] = Field(
        0.95, description="A probability, or auto: the threshold with the best expected F1 (from the model's own "
        "match probabilities of the scored pairs) whose expected precision is at least auto_threshold_min_precision.")
    auto_threshold_min_precision: float = Field(0.999, gt=0, lt=1)
    bridge_nhs_numbers: bool = Field(
        True, description="Whether a record without a usable NHS number may join persons holding different "
        "valid numbers into one. true (the default, so older configs keep their behaviour): every link "
        "clusters. false: it joins the records of one number, those of its strongest link (its other links "
        "stay in the links table but do not cluster).")
    max_comparisons: float = Field(2e8, gt=0, description="Refuse blocking that would exceed this count.")
    max_block_comparisons: int = Field(
        5_000_000, ge=1, description="A blocking key whose block would score more pairs than this is dropped from that rule."
    )
    u_max_pairs: float = Field(
        5e6, gt=0, description="Random pairs u is estimated from. An exact level these pairs reach fewer than 100 "
        "times takes its u from the field's value frequencies over every record."
    )
    em_max_pairs: float | None = Field(
        5e5, gt=0, description="Sample EM training pairs down to about this many (EM needs counts of patterns, not all pairs)."
    )
    model: str | None = Field(None, description="Splink JSON path or models:/NAME@ALIAS; trains when absent.")
    comparisons: list[ComparisonConfig] = Field(
        default_factory=default_comparisons, min_length=1,
        description="The fields the model compares, each with a preset or custom levels; by default the "
        "UK-health model (see `default_comparisons`).")
    weight_floor: float | None = Field(
        -10.0, lt=0, description="After training, no level's match weight is below this (m is raised until "
        "log2(m/u) reaches it) unless its comparison is decisive; null turns the floor off.")

    @field_validator("threshold_match_probability")
    @classmethod
    def _probability(cls, threshold):
        if threshold != "auto" and not 0 < threshold < 1:
            raise ValueError("a probability between 0 and 1 (exclusive), or auto")
        return threshold

    @field_validator("comparisons")
    @classmethod
    def _one_comparison_per_field(cls, comparisons: list[ComparisonConfig]) -> list[ComparisonConfig]:
        fields = [c.field for c in comparisons]
        repeated = sorted({f for f in fields if fields.count(f) > 1})
        if repeated:
            raise ValueError(f"one comparison per field; repeated: {repeated}")
        return comparisons


class ProjectConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    key: KeySource
    columns: list[str] = Field(min_length=1, description="Approved pass-through columns.")
    dob: Literal["year_month", "age_band", "drop"] = "age_band"
    postcode: Literal["district", "sector", "drop"] = "district"
    age_reference_date: date = Field(date(2026, 1, 1), description="Ages are taken at this date, so reruns agree.")
    household_key: bool = Field(
        False, description="Publish household_key: an HMAC of each person's household (linkage zone's household_index) "
        "under the project's key. The UPRN and address themselves are never published.")


class ReportConfig(_Strict):
    age_reference_date: date = Field(
        date(2026, 1, 1), description="Subgroup age bands in the run's report are taken at this date, so reruns agree."
    )


class ReviewConfig(_Strict):
    """Clerical review: how many scored pairs `tre-link review sample` draws, and where."""

    pairs: int = Field(300, ge=10, description="Pairs per review sample.")
    borderline_weight: float = Field(
        5.0, gt=0, description="Pairs within this many match-weight units of the threshold are borderline."
    )
    borderline_share: float = Field(
        0.7, ge=0, le=1, description="Share of the sample drawn from the borderline band; the rest spans every other weight."
    )
    seed: int = 7


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
    person_id_key: KeySource | None = Field(
        None, description="Keys new person IDs (an HMAC of the index generation and the cluster), so reruns and "
        "`reproduce` issue the same IDs; without it every new ID is random.")
    linkage: LinkageConfig
    projects: list[ProjectConfig] = Field(default_factory=list)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)

    @field_validator("sources", "projects")
    @classmethod
    def _unique_names(cls, items: list):
        names = [item.name for item in items]
        if len(names) != len(set(names)):
            raise ValueError(f"names must be unique, got {names}")
        return items

    @model_validator(mode="after")
    def _compared_fields_mapped(self) -> JobConfig:
        """Every field the model compares is mapped by at least one source."""
        mapped = set().union(*(s.columns.mapped_fields() for s in self.sources))
        unmapped = [c.field for c in self.linkage.comparisons if c.field not in mapped]
        if unmapped:
            raise ValueError(f"linkage.comparisons: field(s) {unmapped} are compared but no source maps them "
                             "(sources[].columns)")
        return self

    @model_validator(mode="after")
    def _identifiers_never_published(self) -> JobConfig:
        identifiers = set().union(*(s.columns.identifiers for s in self.sources)) | {"address", "uprn"}
        published = sorted({c for p in self.projects for c in p.columns} & identifiers)
        if published:
            raise ValueError(f"projects: column(s) {published} are identifiers and cannot be published")
        return self

    @model_validator(mode="after")
    def _households_for_household_keys(self) -> JobConfig:
        wanting = [p.name for p in self.projects if p.household_key]
        if wanting and not self.maps_households:
            raise ValueError(f"projects {wanting}: household_key needs a source that maps a uprn, or an address "
                             "with a postcode")
        return self

    @property
    def maps_households(self) -> bool:
        """Whether any source maps a UPRN, or an address with a postcode: what a household comes from."""
        return any(s.columns.uprn is not None or (s.columns.address is not None and s.columns.postcode is not None)
                   for s in self.sources)

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
