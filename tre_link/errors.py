"""User-facing errors. Messages name tables, columns, fields and rules, never record values."""


class TreLinkError(Exception):
    """An error the user can fix; the CLI prints it without a traceback and exits 2."""


class ConfigError(TreLinkError):
    """The job config is wrong."""


class InputDataError(TreLinkError):
    """A source table breaks a rule: missing, unreadable, missing a column, duplicated ids."""


class SecretKeyError(TreLinkError):
    """A secret key is missing or malformed."""


class EnvironmentProblem(TreLinkError):
    """The machine lacks something the job needs, such as Java."""
