"""User-facing errors and the exit codes the CLI gives them. Messages name tables, columns,
fields, files and rules, never record values.

Exit codes: 0 ok; 1 a check failed (reproduce not identical, an evaluation under its floor);
2 usage or config; 3 bad input data; 4 environment (Java, jars, store); 5 an unexpected error
(a bug: the traceback goes to the log file).
"""

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_ENVIRONMENT = 4
EXIT_INTERNAL = 5


class TreLinkError(Exception):
    """An error the user can fix; the CLI prints it without a traceback and exits with `exit_code`."""

    exit_code = EXIT_USAGE


class ConfigError(TreLinkError):
    """The job config is wrong."""


class SecretKeyError(TreLinkError):
    """A secret key is missing, malformed, too weak or reused."""


class ZoneBusy(TreLinkError):
    """Another run is writing the same zone."""


class InputDataError(TreLinkError):
    """A source table breaks a rule: missing, unreadable, missing a column, duplicated ids, below a quality floor."""

    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(TreLinkError):
    """The machine lacks something the job needs, such as Java, a jar or the MLflow store."""

    exit_code = EXIT_ENVIRONMENT


class SourceSchemaChanged(InputDataError):
    """A refresh found a source whose schema changed since the version the person index was built from."""


class SourceVersionOlder(InputDataError):
    """A refresh was asked to read a source version older than the one the person index was built from."""


class ChangesUnavailable(InputDataError):
    """A refresh cannot read a source's changes: the earlier version, or its change feed, was vacuumed."""
