"""Progress on the terminal: stage counters (`[3/6] link`), a heartbeat while a long stage runs
(what Spark is doing, from its status tracker), and the total time at the end."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tre_link.platform import logs

log = logging.getLogger("tre_link")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def spark_activity(spark) -> str:
    """What Spark is running now, in a few words: active jobs, and each active stage's tasks done."""
    tracker = spark.sparkContext.statusTracker()
    jobs = tracker.getActiveJobsIds()
    if not jobs:
        return "no Spark job running"
    stages = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(stage_id)
        if info is not None:
            stages.append(f"stage {stage_id} {info.numCompletedTasks}/{info.numTasks} tasks")
    return f"Spark job{'s' if len(jobs) > 1 else ''} {', '.join(map(str, sorted(jobs)))}" + (
        f": {'; '.join(stages)}" if stages else "")


class Heartbeat:
    """A daemon thread reporting `spark_activity` every `interval` seconds until `stop()`: on a
    terminal, in place on its last line; elsewhere (CI, a pipe, the log file) as a log line every
    `log_every` seconds, so a long stage shows it is alive without filling the screen."""

    def __init__(self, spark, label: str, interval: float = 10.0, log_every: float = 60.0):
        self.spark, self.label, self.interval, self.log_every = spark, label, interval, log_every
        self._logged = 0.0
        self._stop = threading.Event()
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._beat, name=f"tre-link heartbeat {label}", daemon=True)
        self.beats = 0

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                activity = spark_activity(self.spark)
            except Exception:  # the session is stopping: nothing to report, and nothing to fail
                return
            self.beats += 1
            running = time.perf_counter() - self._start
            line = f"      {self.label}: {duration(running)} running; {activity}"
            if not logs.status(line) and running - self._logged >= self.log_every:
                self._logged = running
                log.info("%s", line)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 5)
        if self.beats:
            logs.status("")  # clear the status line


class Progress:
    """Counts stages of one command against its total and times it; each stage has a heartbeat."""

    def __init__(self, spark, total: int, *, interval: float = 10.0, log_every: float = 60.0):
        self.spark, self.total, self.interval, self.log_every = spark, total, interval, log_every
        self.done = 0
        self.started = time.perf_counter()
        self.stage_seconds: dict[str, float] = {}  # each finished stage's wall time, by name

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.done += 1
        counter = f"[{self.done}/{self.total}]"
        log.info("%s %s", counter, name)
        start = time.perf_counter()
        heartbeat = Heartbeat(self.spark, f"{counter} {name}", self.interval, self.log_every).start()
        try:
            yield
        finally:
            heartbeat.stop()
        self.stage_seconds[name] = time.perf_counter() - start
        log.info("%s %s done in %s", counter, name, duration(self.stage_seconds[name]))

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def finish(self) -> None:
        log.info("finished %d stage%s in %s", self.done, "" if self.done == 1 else "s", duration(self.seconds))
