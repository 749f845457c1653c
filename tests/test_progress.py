"""Progress and quiet logs: stage counters, a heartbeat from Spark's status tracker that stops
cleanly, the JVM's output in the log file, library warnings collected once in plain words."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
import time

from tre_link.platform import logs
from tre_link.platform.progress import Progress, duration


def _slow_job(spark) -> int:
    return spark.range(0, 4, 1, 2).rdd.map(lambda x: time.sleep(1.5) or x).count()


def test_stage_counter_heartbeat_stage_times_and_total_time(spark, caplog):
    caplog.set_level(logging.INFO, logger="tre_link")
    progress = Progress(spark, 2, interval=0.3, log_every=0)
    with progress.stage("first"):
        assert _slow_job(spark) == 4
    with progress.stage("second"):
        pass
    progress.finish()
    lines = [r.getMessage() for r in caplog.records if r.name == "tre_link"]
    assert lines[0] == "[1/2] first"
    beats = [line for line in lines if line.strip().startswith("[1/2] first:")]
    assert beats and any(re.search(r"Spark job \d+: stage \d+ \d+/2 tasks", b) for b in beats), lines
    assert re.fullmatch(r"\[1/2\] first done in \d+s", lines[len(beats) + 1])
    assert "[2/2] second" in lines and re.fullmatch(r"finished 2 stages in \d+s", lines[-1])
    assert list(progress.stage_seconds) == ["first", "second"]
    assert progress.stage_seconds["first"] >= 3.0 > progress.stage_seconds["second"]  # two 1.5 s sleeps per task
    assert not [t for t in threading.enumerate() if t.name.startswith("tre-link heartbeat")]


def test_heartbeat_stops_when_the_stage_fails_and_the_stage_has_no_time(spark):
    progress = Progress(spark, 1, interval=0.2, log_every=0)
    try:
        with progress.stage("failing"):
            raise ValueError("stage failed")
    except ValueError:
        pass
    assert not [t for t in threading.enumerate() if t.name.startswith("tre-link heartbeat")]
    assert progress.stage_seconds == {}


def test_duration_reads_minutes_and_seconds():
    assert duration(9.6) == "10s" and duration(61) == "1m 01s" and duration(600) == "10m 00s"


def test_jvm_output_to_sends_a_child_processs_stdout_and_stderr_to_the_log_file(tmp_path):
    log_file = tmp_path / "run.log"
    with logs.jvm_output_to(log_file):
        subprocess.run([sys.executable, "-c", "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"],
                       check=True)
    assert log_file.read_text().splitlines() == ["to stdout", "to stderr"]


def test_library_loggers_go_to_the_log_file_and_only_tre_links_own_lines_to_the_terminal(tmp_path, capfd):
    handlers = logs.configure(0, str(tmp_path / "logs"))
    try:
        logging.getLogger("mlflow.store").info("Creating initial MLflow database tables...")
        logging.getLogger("py4j.clientserver").info("Closing down clientserver connection")
        logging.getLogger("tre_link").info("[1/6] standardise")
    finally:
        logs.unconfigure(handlers)
    terminal = capfd.readouterr().err
    assert "[1/6] standardise" in terminal
    assert "MLflow" not in terminal and "clientserver" not in terminal
    [log_file] = (tmp_path / "logs").glob("tre-link-*.log")
    logged = log_file.read_text()
    assert "Creating initial MLflow database tables" in logged and "clientserver" in logged
    # one timestamp format, the same in the file and on the terminal
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", logged)
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[1/6\] standardise$", terminal, re.M)


def test_library_warnings_are_collected_once_each_in_plain_words():
    untrained = "WARNING:\nLevel {} on comparison {} not observed in dataset, unable to train m value\n"
    with logs.library_warnings() as collected:
        splink = logging.getLogger("splink.internals.expectation_maximisation")
        splink.warning(untrained.format("Exact match on postcode_sector", "postcode"))
        splink.warning(untrained.format("All other comparisons", "sex"))
        splink.warning(untrained.format("All other comparisons", "sex"))
        logging.getLogger("mlflow.pyfunc").warning("Failed to infer model signature: Type hint ... cannot be used")
        logging.getLogger("mlflow.pyfunc").warning("Failed to infer model signature: Type hint ... cannot be used")
        logging.getLogger("tre_link").warning("our own warning: not a library's")
    assert collected.messages == [
        "Splink: EM had no training pairs at 2 comparison level(s) (postcode: Exact match on postcode_sector; "
        "sex: All other comparisons), so their m values keep Splink's defaults; usual for rare levels, "
        "worth a look if a level matters",
        logs.PLAIN_WORDS["infer model signature"],
    ]
    logging.getLogger("mlflow.pyfunc").warning("after the block")
    assert len(collected.messages) == 2


def test_the_demo_counts_its_stages_and_ends_with_the_total_time(demo_run):
    lines = demo_run.log_lines
    stages = [line for line in lines if re.fullmatch(r"\[\d/\d\] [a-z_ ]+(\(.*\))?", line)]
    assert stages == ["[1/8] synth (800 people)", "[2/8] standardise", "[3/8] train", "[4/8] link",
                      "[5/8] publish cardio_outcomes", "[6/8] publish social_care_housing", "[7/8] evaluate",
                      "[8/8] report"]
    assert re.fullmatch(r"finished 8 stages in (\d+m )?\d+s", lines[-1]), lines[-3:]
