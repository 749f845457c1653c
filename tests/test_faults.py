"""Governance under faults and bad input: each attack a hostile or careless user, a faulty feed or a
crash would make, and the behaviour that must hold after it.

Most tests share one small population of their own (its own seed, so its identifiers appear
nowhere else) and give each run fresh linkage and research zones over it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from pyspark.sql import functions as F

from tre_link import TreLink
from tre_link.cli import main
from tre_link.demo import ensure_demo_keys
from tre_link.ingest.stage import read_standardised
from tre_link.platform import delta_io
from tre_link.platform.config import JobConfig, load_config
from tre_link.platform.errors import ConfigError, InputDataError, SecretKeyError
from tre_link.platform.secrets import load_key
from tre_link.platform.zone_lock import LOCK_NAME
from tre_link.record.report import table_checksum
from tre_link.synth import generate

from conftest import SimulatedCrash, _crash_after_commit, small_demo_config

REPO = Path(__file__).resolve().parents[1]
SEED = 9173  # this population's own: its NHS numbers and postcodes occur in no other test's data
PEOPLE = 300


# ------------------------------------------------------------------------------------------------
# A population of our own, and fresh zones over it
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def population(spark, tmp_path_factory) -> Path:
    """Sources, opt-outs, truth and keys of a small population, written once; returns its config."""
    path = small_demo_config(tmp_path_factory.mktemp("faults") / "base", people=PEOPLE, seed=SEED, opt_out_rate=0.05)
    cfg = load_config(path)
    generate(spark, cfg.synth)
    ensure_demo_keys(cfg)
    return path


def zones(population: Path, root: Path, **changes) -> Path:
    """The population's config with linkage and research zones (and MLflow store) of their own under `root`."""
    raw = yaml.safe_load(population.read_text())
    raw["output"] = {"root": str(root), "linkage_zone": str(root / "linkage"), "research_zone": str(root / "research")}
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{root / 'mlflow.db'}"
    raw.update(changes)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _stages(spark, config: Path) -> None:
    tl = TreLink(spark, config)
    tl.standardise()
    tl.train()
    tl.link()
    for project in tl.config.projects:
        tl.publish(project.name)


def _outputs(spark, cfg: JobConfig) -> dict[str, str]:
    """Checksums of every table a run writes, by table name."""
    tables = {"links": cfg.output.links_table, "person_index": cfg.output.person_index_table,
              **{f"research/{p.name}": cfg.output.research_table(p.name) for p in cfg.projects}}
    checksums = {name: table_checksum(spark.read.format("delta").load(path)) for name, path in tables.items()}
    # Which run wrote an event differs between runs by design; the events themselves may not.
    events = spark.read.format("delta").load(cfg.output.person_events_table).drop("run")
    return {**checksums, "person_events": table_checksum(events)}


@pytest.fixture(scope="module")
def clean_zones(spark, population, tmp_path_factory) -> Path:
    """The zones of one clean run (every stage but MLflow's), which no test changes: returns their root."""
    root = tmp_path_factory.mktemp("clean")
    _stages(spark, zones(population, root))
    return root


@pytest.fixture(scope="module")
def clean_run(spark, clean_zones) -> dict[str, str]:
    """The outputs of one clean run, to compare every recovered run with."""
    return _outputs(spark, load_config(clean_zones / "job.yaml"))


def copy_of_clean_zones(clean_zones: Path, population: Path, root: Path) -> Path:
    """The clean run's tables in zones of a test's own, for a test that needs a linked and published
    zone to work on, not a run of its own; returns its config. Delta tables hold relative paths, so
    a copy is whole; the MLflow store and Spark scratch stay behind."""
    shutil.copytree(clean_zones, root, ignore=shutil.ignore_patterns("job.yaml", "mlflow.db", "_scratch"))
    return zones(population, root)


def _identifiers(spark, cfg: JobConfig) -> dict[str, set[str]]:
    """This population's NHS numbers, and its postcodes as standardised ("LS1 4AB")."""
    found = {"nhs": set(), "postcode": set()}
    for source in cfg.sources:
        rows = spark.read.format("delta").load(source.path).select(
            F.col(source.columns.nhs_number).alias("nhs"), F.col(source.columns.postcode).alias("postcode")).collect()
        for row in rows:
            if row["nhs"]:
                found["nhs"].add(re.sub(r"\D", "", row["nhs"]))
            if row["postcode"]:
                squashed = row["postcode"].upper().replace(" ", "")
                found["postcode"].add(f"{squashed[:-3]} {squashed[-3:]}")
    found["nhs"] = {n for n in found["nhs"] if len(n) == 10}
    return found


# ------------------------------------------------------------------------------------------------
# 1. Opt-outs apply to persons
# ------------------------------------------------------------------------------------------------


def test_no_opted_out_person_reaches_a_research_dataset(spark, clean_zones):
    """Every person with an opted-out number on any record is gone from every dataset, including
    their records that carry no number: checked by linked person and by true person."""
    cfg = load_config(clean_zones / "job.yaml")
    index = spark.read.format("delta").load(cfg.output.person_index_table)
    standardised = read_standardised(spark, cfg)
    opted = spark.read.format("delta").load(cfg.opt_outs).select("nhs_number").distinct()
    carriers = standardised.join(opted, "nhs_number", "left_semi").select("source", "record_id")
    truth = spark.read.format("delta").load(cfg.truth_path)
    opted_true = truth.join(carriers, ["source", "record_id"], "left_semi").select("person_id").distinct()
    # the attack: opted-out people also have records without any NHS number
    numberless = truth.join(opted_true, "person_id", "left_semi").join(
        standardised.where("nhs_number is null"), ["source", "record_id"], "left_semi")
    assert opted_true.count() > 0 and numberless.count() > 0

    opted_linked = index.join(carriers, ["source", "record_id"], "left_semi").select("person_id").distinct()
    opted_by_truth = index.join(truth.join(opted_true, "person_id", "left_semi").select("source", "record_id"),
                                ["source", "record_id"], "left_semi").select("person_id").distinct()
    for project in cfg.projects:
        key = load_key(project.key, purpose=project.name)
        research = spark.read.format("delta").load(cfg.output.research_table(project.name)).select("person_key")
        for persons in (opted_linked, opted_by_truth):
            assert research.join(_person_keys(persons, key), "person_key", "left_semi").count() == 0, project.name


def _person_keys(persons, key: bytes):
    from tre_link.platform.hmac_sql import hmac_sha256_hex, with_keyed_columns

    return with_keyed_columns(persons, key, {"person_key": hmac_sha256_hex(F.col("person_id"))}).select("person_key")


def test_blank_nhs_column_fails_its_floor_naming_source_field_and_share(spark, population, tmp_path, capsys):
    config = zones(population, tmp_path)
    cfg = load_config(config)
    gp = cfg.sources[0]
    blank = spark.read.format("delta").load(gp.path).withColumn(gp.columns.nhs_number, F.lit(None).cast("string"))
    blank.write.format("delta").save(str(tmp_path / "gp_blank"))
    raw = yaml.safe_load(config.read_text())
    raw["sources"][0]["path"] = str(tmp_path / "gp_blank")
    config.write_text(yaml.safe_dump(raw))
    assert main(["standardise", "--config", str(config)]) == 3
    err = capsys.readouterr().err
    assert "table gp: below its quality floors: nhs_number: valid in 0.0% of rows" in err
    assert "Traceback" not in err
    # a floor set to 0 lets the source through: config says it has no usable numbers
    raw["sources"][0]["quality_floors"] = {"nhs_number": 0}
    config.write_text(yaml.safe_dump(raw))
    TreLink(spark, config).standardise()


# ------------------------------------------------------------------------------------------------
# 2. Identifiable bytes stay in the linkage zone
# ------------------------------------------------------------------------------------------------


LZ4_MAGIC = b"LZ4Block"


def decoded(data: bytes) -> bytes:
    """`data` with every lz4-java block (Spark's default shuffle and spill codec) decompressed after it."""
    import lz4.block

    parts, at = [data], data.find(LZ4_MAGIC)
    while at != -1:
        header = data[at:at + 21]
        if len(header) == 21:
            method = header[8] & 0xF0
            compressed, original = int.from_bytes(header[9:13], "little"), int.from_bytes(header[13:17], "little")
            body = data[at + 21:at + 21 + compressed]
            try:
                parts.append(body if method == 0x10 else lz4.block.decompress(body, uncompressed_size=original))
            except Exception:  # noqa: BLE001 - a truncated last block of a killed write
                pass
        at = data.find(LZ4_MAGIC, at + 1)
    return b"\n".join(parts)


def identifiers_in(paths: list[Path], identifiers: dict[str, set[str]]) -> tuple[dict[str, int], list[str]]:
    """How many of each kind of identifier the files hold (decoded), and which files hold any."""
    found, holding = {kind: set() for kind in identifiers}, []
    for path in paths:
        try:
            text = decoded(path.read_bytes()).upper()
        except OSError:
            continue
        hits = {kind: {v for v in values if v.encode() in text} for kind, values in identifiers.items()}
        if any(hits.values()):
            holding.append(str(path))
        for kind in found:
            found[kind] |= hits[kind]
    return {kind: len(values) for kind, values in found.items()}, holding


def _files_under(root: Path, since: float, outside: list[Path]) -> list[Path]:
    files = []
    for directory, _, names in os.walk(root, onerror=lambda e: None):
        here = Path(directory)
        if any(here == o or o in here.parents for o in outside):
            continue
        for name in names:
            path = here / name
            try:
                if path.is_file() and path.stat().st_mtime >= since:
                    files.append(path)
            except OSError:
                continue
    return files


def _other_workers_temp(tmp_path_factory) -> list[Path]:
    """Under pytest-xdist, the other workers' pytest temp directories: their own test data, which
    the killed run was never given (its paths are all under this test's tmp_path)."""
    own = tmp_path_factory.getbasetemp().resolve()
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return []
    return [d.resolve() for d in own.parent.glob("popen-gw*") if d.resolve() != own]


@pytest.mark.slow
def test_killed_run_leaves_no_identifier_outside_the_linkage_zone_and_a_rerun_recovers(
        spark, population, clean_run, tmp_path, tmp_path_factory):
    """`tre-link run` killed (SIGKILL) while it links: no NHS number or postcode of the population in
    any file written outside the linkage zone and the sources since it started (the system temp
    directory included, Spark's compressed shuffle blocks decoded). The next run takes over the
    dead run's lock, marks its MLflow runs FAILED, removes its scratch, and ends as a clean run."""
    from mlflow.tracking import MlflowClient

    config = zones(population, tmp_path / "zones")
    cfg = load_config(config)
    zone = Path(cfg.output.linkage_zone).resolve()
    scratch = Path(cfg.spark.local_dir).resolve()
    model = Path(cfg.output.model_json)
    identifiers = _identifiers(spark, cfg)
    # The test harness's own session (which read the sources above) keeps its scratch elsewhere.
    harness = Path(spark.conf.get("spark.local.dir")).resolve()
    started = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "tre_link.cli", "run", "--config", str(config)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None:  # until linking has shuffled records to disk
            if model.exists() and any(p.name.startswith("shuffle_") and p.stat().st_mtime > model.stat().st_mtime
                                      for p in scratch.rglob("*.data")):
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be killed while linking"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    sources = [Path(s.path).resolve().parent for s in cfg.sources]
    outside = [zone, *sources, Path(cfg.truth_path).resolve().parent, harness, *_other_workers_temp(tmp_path_factory)]
    roots = {Path(tempfile.gettempdir()).resolve(), REPO, tmp_path.resolve()}
    leaked, files = identifiers_in([f for r in roots for f in _files_under(r, started, outside)], identifiers)
    assert leaked == {"nhs": 0, "postcode": 0}, files
    # The scan can find them: the killed job's shuffle files, inside the zone, hold NHS numbers
    # (grouped by number for the deterministic pass, the first shuffle of linking).
    inside, _ = identifiers_in([p for p in scratch.rglob("*") if p.is_file()], identifiers)
    assert inside["nhs"] > 0
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o700 and stat.S_IMODE(zone.stat().st_mode) == 0o700

    client = MlflowClient(tracking_uri=cfg.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.mlflow.experiment).experiment_id])
    killed = [r for r in runs if r.info.status == "RUNNING"]  # the pipeline run and its link stage
    assert {r.data.tags.get("mlflow.runName") for r in killed} >= {"pipeline", "link"}
    assert (zone / LOCK_NAME).exists()
    TreLink(spark, config).run()
    assert {client.get_run(r.info.run_id).info.status for r in killed} == {"FAILED"}
    assert not (zone / LOCK_NAME).exists()
    assert not [d for d in scratch.iterdir() if d.name.endswith(f"-{proc.pid}")]
    assert list(Path(cfg.spark.checkpoint_dir).iterdir()) == []
    assert _outputs(spark, cfg) == clean_run


def test_spark_scratch_and_reproduce_outputs_default_to_the_linkage_zone(population, tmp_path):
    cfg = load_config(zones(population, tmp_path))
    zone = cfg.output.linkage_zone
    for location in (cfg.spark.local_dir, cfg.spark.checkpoint_dir):
        assert Path(location).resolve().is_relative_to(Path(zone).resolve())
    from tre_link.platform.spark import session_scratch_dir

    own = Path(session_scratch_dir(str(tmp_path / "scratch")))
    assert own.name == f"{socket.gethostname()}-{os.getpid()}" and stat.S_IMODE(own.stat().st_mode) == 0o700
    dead = tmp_path / "scratch" / f"{socket.gethostname()}-999999999"
    dead.mkdir()
    session_scratch_dir(str(tmp_path / "scratch"))
    assert not dead.exists(), "a dead process's shuffle files are removed at the next start"


# ------------------------------------------------------------------------------------------------
# 3. Zones cannot be bypassed
# ------------------------------------------------------------------------------------------------


def _config_with(population: Path, tmp_path: Path, **output) -> Path:
    raw = yaml.safe_load(population.read_text())
    raw["output"].update(output)
    path = tmp_path / "bypass.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", ["file_uri", "dotdot", "symlink", "sources", "opt_outs", "truth", "scratch"])
def test_every_zone_bypass_is_refused(population, tmp_path, case):
    base = load_config(population)
    linkage = tmp_path / "x" / "linkage"
    linkage.mkdir(parents=True)
    research = {
        "file_uri": None,  # linkage given as a file: URI, research as a plain path inside it
        "dotdot": str(tmp_path / "elsewhere" / ".." / "x" / "linkage" / "research"),
        "symlink": str(tmp_path / "link-to-linkage" / "research"),
        "sources": str(Path(base.sources[0].path).parent),
        "opt_outs": str(Path(base.opt_outs) / "research"),
        "truth": str(Path(base.truth_path).parent),
        "scratch": str(tmp_path / "scratch"),
    }[case]
    output = {"linkage_zone": str(linkage), "research_zone": research}
    if case == "file_uri":
        output = {"linkage_zone": linkage.as_uri(), "research_zone": str(linkage / "research")}
    if case == "symlink":
        (tmp_path / "link-to-linkage").symlink_to(linkage)
    path = _config_with(population, tmp_path, **output)
    if case == "scratch":
        raw = yaml.safe_load(path.read_text())
        raw["spark"]["local_dir"] = str(tmp_path / "scratch" / "local")
        path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="output.research_zone overlaps"):
        load_config(path)


def test_no_delta_table_is_written_inside_another(spark, tmp_path):
    outer = str(tmp_path / "source")
    delta_io.write_delta(spark.range(3), outer)
    with pytest.raises(ConfigError, match="inside the Delta table"):
        delta_io.write_delta(spark.range(3), f"{outer}/research/project/records")


# ------------------------------------------------------------------------------------------------
# 4. Keys are distinct and strong
# ------------------------------------------------------------------------------------------------


def test_one_key_for_two_projects_is_refused_without_printing_it(spark, population, clean_zones, tmp_path,
                                                                 monkeypatch):
    cfg = load_config(copy_of_clean_zones(clean_zones, population, tmp_path / "zones"))
    first, second = cfg.projects[:2]
    shared = (tmp_path / "shared.key")
    main(["keygen", "--out", str(shared)])
    monkeypatch.setenv(first.key.env, shared.read_text().strip())
    monkeypatch.setenv(second.key.env, shared.read_text().strip())
    with pytest.raises(SecretKeyError, match="the same key value serves project .* and project") as err:
        TreLink(spark, cfg).publish(first.name)
    assert shared.read_text().strip() not in str(err.value)


def test_project_key_equal_to_the_linkage_key_is_refused(spark, population, clean_zones, tmp_path, monkeypatch):
    linked = load_config(copy_of_clean_zones(clean_zones, population, tmp_path / "zones"))
    cfg = linked.model_copy(update={"linkage_key": linked.projects[0].key.model_copy(
        update={"env": "TRE_LINK_TEST_LINKAGE_KEY"})})
    monkeypatch.setenv("TRE_LINK_TEST_LINKAGE_KEY", load_key(cfg.projects[0].key, purpose="x").hex())
    with pytest.raises(SecretKeyError, match="the linkage key and project|project .* and the linkage key"):
        TreLink(spark, cfg).publish(cfg.projects[0].name)


@pytest.mark.parametrize("weak", ["0" * 64, "ab" * 40, "passwordpasswordpasswordpassword"])
def test_low_entropy_key_is_refused(monkeypatch, weak):
    from tre_link.platform.config import KeySource

    monkeypatch.setenv("TRE_LINK_WEAK", weak)
    with pytest.raises(SecretKeyError, match="too weak") as err:
        load_key(KeySource(env="TRE_LINK_WEAK"), purpose="project x")
    assert weak not in str(err.value)


def test_keygen_writes_a_strong_owner_only_key_and_will_not_overwrite_it(tmp_path, monkeypatch, capsys):
    from tre_link.platform.config import KeySource

    path = tmp_path / "keys" / "project.key"
    assert main(["keygen", "--out", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.delenv("TRE_LINK_NONE", raising=False)
    assert len(load_key(KeySource(env="TRE_LINK_NONE", file=str(path)), purpose="x")) == 32
    before = path.read_text()
    assert main(["keygen", "--out", str(path)]) == 2
    assert "exists already" in capsys.readouterr().err and path.read_text() == before
    assert main(["keygen", "--out", str(path), "--force"]) == 0 and path.read_text() != before


# ------------------------------------------------------------------------------------------------
# 5. Bad data is loud
# ------------------------------------------------------------------------------------------------


def _source_with_dobs(spark, population, tmp_path, dobs: list[str]) -> Path:
    """The population's config with the hospital source's DOB column replaced by `dobs` (cycled)."""
    config = zones(population, tmp_path)
    cfg = load_config(config)
    hospital = next(s for s in cfg.sources if s.name == "hospital")
    table = spark.read.format("delta").load(hospital.path)
    pick = F.element_at(F.array(*[F.lit(d) for d in dobs]), (F.abs(F.hash(hospital.columns.record_id)) % len(dobs)) + 1)
    table.withColumn(hospital.columns.dob, pick).write.format("delta").save(str(tmp_path / "hospital_bad"))
    raw = yaml.safe_load(config.read_text())
    next(s for s in raw["sources"] if s["name"] == "hospital")["path"] = str(tmp_path / "hospital_bad")
    config.write_text(yaml.safe_dump(raw))
    return config


def test_dob_in_an_unexpected_format_fails_naming_source_field_and_share(spark, population, tmp_path, capsys):
    config = _source_with_dobs(spark, population, tmp_path, ["12 Jul 1985", "3 Feb 1990", "28 Dec 1961"])
    assert main(["standardise", "--config", str(config)]) == 3
    assert "table hospital: below its quality floors: dob: valid in 0.0% of rows" in capsys.readouterr().err


def test_month_first_dates_in_a_day_first_column_are_refused(spark, population, tmp_path):
    us = [f"{m:02d}/{d:02d}/{y}" for m, d, y in [(7, 25, 1985), (1, 30, 1970), (12, 13, 2001), (3, 4, 1999),
                                                 (11, 28, 1950), (2, 17, 1988)]]
    config = _source_with_dobs(spark, population, tmp_path, us)
    with pytest.raises(InputDataError, match=r"table hospital: column 'dob': \d+\.\d% of sampled dates can only be "
                                             r"read month-first \(MM/dd\)"):
        TreLink(spark, config).standardise()


def test_failed_standardise_puts_back_every_table_it_had_written(spark, population, tmp_path):
    config = zones(population, tmp_path / "zones")
    cfg = load_config(config)
    TreLink(spark, cfg).standardise()
    before = {s.name: delta_io.latest_version(spark, cfg.output.standardised_table(s.name)) for s in cfg.sources}
    checksums = {n: table_checksum(spark.read.format("delta").load(cfg.output.standardised_table(n))) for n in before}
    # The last source now fails its floor, after the first two were written again.
    bad = cfg.model_copy(update={"sources": [*cfg.sources[:-1], cfg.sources[-1].model_copy(
        update={"quality_floors": {"nhs_number": 1.0}})]})
    with pytest.raises(InputDataError, match=f"table {cfg.sources[-1].name}: below its quality floors: nhs_number"):
        TreLink(spark, bad).standardise()
    for name in before:
        table = spark.read.format("delta").load(cfg.output.standardised_table(name))
        assert table_checksum(table) == checksums[name], name
    read_standardised(spark, cfg)  # still one whole standardisation


# ------------------------------------------------------------------------------------------------
# 6. Runs are whole, or visibly not
# ------------------------------------------------------------------------------------------------


# Commits of one run: gp, hospital, council, quality_profile, person_index, person_events, scored_pairs,
# links (the link's last: it marks the link finished), then each project's research dataset and key_events.
@pytest.mark.slow
@pytest.mark.parametrize("commit", [1, 5, 6, 8])
def test_crash_at_a_commit_point_then_rerun_equals_a_clean_run(spark, population, clean_run, tmp_path, monkeypatch,
                                                                commit):
    config = zones(population, tmp_path)
    with monkeypatch.context() as patched:
        _crash_after_commit(patched, commit)
        with pytest.raises(SimulatedCrash):
            _stages(spark, config)
    _stages(spark, config)
    assert _outputs(spark, load_config(config)) == clean_run


def test_publish_refuses_links_and_person_index_from_different_runs(spark, population, clean_zones, tmp_path):
    config = copy_of_clean_zones(clean_zones, population, tmp_path / "zones")
    tl = TreLink(spark, config)
    # A link killed after its person_index commit, before its last (links) commit.
    path = tl.config.output.person_index_table
    delta_io.write_delta(spark.read.format("delta").load(path).where("source != 'gp'"), path,
                         metadata={"link_run": "killed"})
    with pytest.raises(InputDataError, match="links and person_index were written by different link runs"):
        tl.publish(tl.config.projects[0].name)


def test_a_second_writer_gets_zone_busy_with_exit_2_and_no_traceback(spark, population, tmp_path, capsys):
    config = zones(population, tmp_path)
    zone = Path(load_config(config).output.linkage_zone)
    zone.mkdir(parents=True)
    (zone / LOCK_NAME).write_text(f'{{"pid": {os.getpid()}, "host": "{socket.gethostname()}", '
                                  '"since": "now", "purpose": "publish cardio_outcomes"}')
    assert main(["publish", "--config", str(config), "--project", "cardio_outcomes"]) == 2
    err = capsys.readouterr().err
    assert "another run holds the linkage zone" in err and "publish cardio_outcomes" in err
    assert "Traceback" not in err and "Exception" not in err


# ------------------------------------------------------------------------------------------------
# 7. Named errors, not stack traces
# ------------------------------------------------------------------------------------------------


def test_truncated_parquet_in_a_source_is_a_named_input_error(spark, population, tmp_path, capsys):
    config = zones(population, tmp_path)
    cfg = load_config(config)
    gp = Path(cfg.sources[0].path)
    copy = tmp_path / "gp_damaged"
    spark.read.format("delta").load(str(gp)).write.format("delta").save(str(copy))
    data_file = next(copy.glob("*.parquet"))
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
    raw = yaml.safe_load(config.read_text())
    raw["sources"][0]["path"] = str(copy)
    config.write_text(yaml.safe_dump(raw))
    assert main(["standardise", "--config", str(config)]) == 3
    err = capsys.readouterr().err
    assert f"table gp: a data file cannot be read ({data_file.name})" in err
    assert "at org.apache" not in err and "Traceback" not in err


def test_training_on_one_giant_block_names_the_rule(spark, tmp_path):
    # A population big enough that the giant block's pairs swamp EM's sample (3,000 people, as
    # the attack was first made; at 300 the population's own pairs still balance them).
    population = small_demo_config(tmp_path / "population", people=3000)
    generate(spark, load_config(population).synth)
    config = zones(population, tmp_path / "zones")
    cfg = load_config(config)
    gp = cfg.sources[0]
    clones = spark.range(10_000).select(
        F.concat(F.lit("clone-"), F.col("id").cast("string")).alias(gp.columns.record_id),
        F.lit(None).cast("string").alias(gp.columns.nhs_number), F.lit("ANNE").alias(gp.columns.given_name),
        F.lit("SMITH").alias(gp.columns.family_name), F.lit("1980-01-02").alias(gp.columns.dob),
        F.lit("F").alias(gp.columns.sex), F.lit("LS1 4AB").alias(gp.columns.postcode))
    table = spark.read.format("delta").load(gp.path)
    table.unionByName(clones, allowMissingColumns=True).write.format("delta").save(str(tmp_path / "gp_clones"))
    raw = yaml.safe_load(config.read_text())
    raw["sources"][0]["path"] = str(tmp_path / "gp_clones")
    config.write_text(yaml.safe_dump(raw))
    tl = TreLink(spark, config)
    tl.standardise()
    with pytest.raises(InputDataError, match=r"linkage.blocking_rules_training: EM on rule 'l.dob = r.dob'"):
        tl.train()


def test_reading_a_vacuumed_version_is_a_named_input_error(spark, tmp_path):
    path = str(tmp_path / "source")
    spark.range(10).write.format("delta").save(path)
    spark.range(20).write.format("delta").mode("overwrite").save(path)
    for data_file in Path(path).glob("*.parquet"):  # what a VACUUM past the retention leaves
        if not any(str(data_file.name) in line for line in (Path(path) / "_delta_log" / "00000000000000000001.json")
                   .read_text().splitlines() if '"add"' in line):
            data_file.unlink()
    table = delta_io.read_delta(spark, path, 0, table="gp")
    with pytest.raises(InputDataError, match="table gp: a data file cannot be read"):
        with delta_io.reading("gp"):
            table.df.agg(F.sum("id")).collect()


# ------------------------------------------------------------------------------------------------
# 8. Audited re-identification
# ------------------------------------------------------------------------------------------------


def test_reidentify_maps_keys_back_inside_the_linkage_zone_and_audits_it(spark, population, clean_zones, tmp_path,
                                                                        capsys):
    config = copy_of_clean_zones(clean_zones, population, tmp_path / "zones")
    cfg = load_config(config)
    research = spark.read.format("delta").load(cfg.output.research_table("cardio_outcomes"))
    keys = sorted({r.person_key for r in research.select("person_key").limit(12).collect()})
    keys_file = tmp_path / "findings.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    args = ["reidentify", "--config", str(config), "--project", "cardio_outcomes", "--keys", str(keys_file)]
    assert main([*args, "--reason", "  "]) == 2  # no reason, no re-identification
    assert "a reason is required" in capsys.readouterr().err
    assert main([*args, "--reason", "follow-up of a finding in direct care", "--requested-by", "dr-a"]) == 0
    mapping_path = re.search(r'"mapping": "([^"]+)"', capsys.readouterr().out).group(1)
    assert Path(mapping_path).resolve().is_relative_to(Path(cfg.output.linkage_zone).resolve())
    mapping = spark.read.format("delta").load(mapping_path)
    assert {r.person_key for r in mapping.select("person_key").distinct().collect()} == set(keys)
    index = spark.read.format("delta").load(cfg.output.person_index_table)
    assert mapping.join(index, ["source", "record_id"], "left_anti").count() == 0
    audit = spark.read.format("delta").load(cfg.output.reidentification_audit_table).collect()
    assert [(a.requested_by, a.project, a.reason, a.keys_requested, a.persons_found) for a in audit] == [
        ("dr-a", "cardio_outcomes", "follow-up of a finding in direct care", len(keys), len(keys))]
    with pytest.raises(Exception, match="(?i)append.?only|DELTA_CANNOT_MODIFY_APPEND_ONLY"):
        spark.sql(f"DELETE FROM delta.`{cfg.output.reidentification_audit_table}`")
