"""Where output goes: one timestamp format for every Python log line, the terminal for tre-link's
own progress, and one log file per process (under output.root/logs) for everything else: the
JVM's start-up (Ivy, Spark, log4j), library loggers (MLflow, Splink, py4j) at every level, and
tracebacks. Library warnings are collected, recorded with the run and shown once in plain words.

Nothing here logs a record value: messages name tables, columns, stages and counts."""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LINE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
TERMINAL_FORMAT = "%(asctime)s %(message)s"
_STARTED = time.strftime("%Y%m%d-%H%M%S")
_previous_levels: list[int] = []  # the root logger's level before each `configure`
# Loggers whose records reach the terminal only through `LibraryWarnings` (as one plain sentence each).
LIBRARIES = ("py4j", "splink", "mlflow", "urllib3", "matplotlib", "py.warnings", "pyspark", "delta")


def log_file(log_dir: str) -> Path:
    """This process's log file under `log_dir` (owner-only directory): the same path for every caller."""
    os.makedirs(log_dir, mode=0o700, exist_ok=True)
    return Path(log_dir).resolve() / f"tre-link-{_STARTED}-{os.getpid()}.log"


class _Terminal(logging.StreamHandler):
    """The terminal: a status line (`status`) that later lines overwrite, when stderr is a terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream.isatty():
            self.stream.write("\r\x1b[K")  # clear a heartbeat's status line first
        super().emit(record)


def status(text: str) -> bool:
    """Show `text` on the terminal's last line, in place (nothing is kept). False when stderr is not
    a terminal, so the caller logs a line instead."""
    if not sys.stderr.isatty():
        return False
    width = shutil.get_terminal_size().columns - 1
    sys.stderr.write("\r\x1b[K" + text[:width])
    sys.stderr.flush()
    return True


class _OursOnly(logging.Filter):
    """tre-link's own records at the terminal's level; other libraries' only from ERROR up."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "tre_link" or record.name.startswith("tre_link.") or record.levelno >= logging.ERROR


def configure(verbosity: int = 0, log_dir: str | None = None) -> list[logging.Handler]:
    """The terminal handler (stderr; -q: warnings only, -v: debug) and, with `log_dir`, the log file
    (every level of every logger). Returns the handlers added, for `unconfigure`."""
    root = logging.getLogger()
    _previous_levels.append(root.level)
    root.setLevel(logging.DEBUG)
    terminal = _Terminal(sys.stderr)
    terminal.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    terminal.setFormatter(logging.Formatter(TERMINAL_FORMAT, TIME_FORMAT))
    terminal.addFilter(_OursOnly())
    handlers: list[logging.Handler] = [terminal]
    if log_dir:
        file_handler = logging.FileHandler(log_file(log_dir), encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter(LINE_FORMAT, TIME_FORMAT))
        handlers.append(file_handler)
    for handler in handlers:
        root.addHandler(handler)
    adopt_library_loggers()
    logging.captureWarnings(True)  # warnings.warn → the py.warnings logger → the log file and LibraryWarnings
    return handlers


def adopt_library_loggers() -> None:
    """Library loggers at INFO into the root handlers (the log file; the terminal shows them only
    from ERROR). MLflow gives its loggers a terminal handler of their own when it is imported: it is
    imported here, and that handler removed, so its start-up lines go to the file too."""
    import mlflow  # noqa: F401  (configures its loggers on import; undone below)

    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO)
    for name in ("mlflow", "alembic", "sqlalchemy.engine", "huey"):  # the loggers MLflow gives a handler
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    for name in ("alembic", "sqlalchemy.engine", "huey"):  # schema migrations: a hundred lines of no interest
        logging.getLogger(name).setLevel(logging.WARNING)


def unconfigure(handlers: list[logging.Handler]) -> None:
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
    if handlers and _previous_levels:
        root.setLevel(_previous_levels.pop())
    logging.captureWarnings(False)


@contextmanager
def jvm_output_to(path: Path | None) -> Iterator[None]:
    """Send this process's stdout and stderr file descriptors to `path` while the block runs: a JVM
    started inside (the SparkSession's) inherits them, so Ivy's resolution report, Spark's start-up
    warnings and log4j's console output go to the log file, not the terminal, for the JVM's life."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        for fd in saved:
            os.dup2(target, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(target)


# Known library warnings, in plain words (matched by a fragment of the original message).
PLAIN_WORDS = {
    "not fully trained": "Splink: EM left some m values untrained (a comparison level never seen among the "
                         "training pairs); Splink used its default m for them. Check the model's m/u chart.",
    "infer model signature": "MLflow: the registered model has no input signature (it could not be inferred "
                             "without an input example); scoring is unaffected.",
}


# Splink's EM, once per comparison level it had no pairs for (names of levels, never values).
UNTRAINED_M = re.compile(r"Level (.+?) on comparison (\S+) not observed in dataset, unable to train m value")


class LibraryWarnings(logging.Handler):
    """Collects WARNING and above from the libraries (Splink, MLflow, Python warnings), each distinct
    message once, in plain words where the message is a known one."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self._messages: list[str] = []
        self._untrained: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "tre_link" or record.name.startswith("tre_link."):
            return
        text = " ".join(line.strip() for line in record.getMessage().splitlines() if line.strip())
        text = text.removeprefix("WARNING:").strip()
        untrained = UNTRAINED_M.search(text)
        if untrained:
            level = f"{untrained.group(2)}: {untrained.group(1)}"
            if level not in self._untrained:
                self._untrained.append(level)
            return
        plain = next((words for fragment, words in PLAIN_WORDS.items() if fragment in text), None)
        plain = plain or f"{record.name.split('.')[0]}: {text[:300]}"
        if plain not in self._messages:
            self._messages.append(plain)

    @property
    def messages(self) -> list[str]:
        untrained = [f"Splink: EM had no training pairs at {len(self._untrained)} comparison level(s) "
                     f"({'; '.join(self._untrained)}), so their m values keep Splink's defaults; "
                     "usual for rare levels, worth a look if a level matters"] if self._untrained else []
        return untrained + self._messages


@contextmanager
def library_warnings() -> Iterator[LibraryWarnings]:
    """Collect library warnings raised inside the block (from their loggers and `warnings.warn`)."""
    collector = LibraryWarnings()
    loggers = [logging.getLogger(name) for name in ("splink", "mlflow", "py.warnings")]
    levels = [lg.level for lg in loggers]
    was_capturing = getattr(logging, "_warnings_showwarning", None) is not None
    for lg in loggers:
        lg.addHandler(collector)
        if lg.level == logging.NOTSET or lg.level > logging.WARNING:
            lg.setLevel(logging.WARNING)
    logging.captureWarnings(True)
    try:
        yield collector
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(collector)
            lg.setLevel(level)
        if not was_capturing:
            logging.captureWarnings(False)
