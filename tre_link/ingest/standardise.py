"""Standardise each source's identifiers into one canonical schema, as Spark column expressions.

Every transform is DataFrame -> DataFrame (or Column -> Column) and runs inside the JVM: no Python
UDFs. Phonetic keys come from Splink's Scala `Dmetaphone`, registered by `tre_link.platform.spark`.

Errors raised here name tables, columns and rules, never record values.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache, reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from tre_link.platform.config import SourceConfig
from tre_link.platform.errors import ConfigError, InputDataError
from tre_link.ingest.nhs_number import digits_only, status_of_digits

# The canonical output columns, in order; the source's passthrough columns follow, then nothing else.
STANDARD_COLUMNS = (
    "source",
    "record_id",
    "nhs_number",
    "nhs_number_status",
    "nhs_number_digits",
    "given_name",
    "given_name_root",
    "given_name_phonetic",
    "family_name",
    "family_name_first",
    "family_name_phonetic",
    "dob",
    "dob_year",
    "dob_month",
    "dob_day",
    "sex",
    "postcode",
    "postcode_area",
    "postcode_district",
    "postcode_sector",
    "address",
    "uprn",
)
# Data-quality flags: was anything recorded in the raw field, before validation? quality.py uses them
# to split completeness (recorded at all) from validity (recorded and usable).
RAW_PRESENT_COLUMNS = ("dob_raw_present", "sex_raw_present", "postcode_raw_present", "uprn_raw_present")
OUTPUT_COLUMNS = STANDARD_COLUMNS + RAW_PRESENT_COLUMNS

IDENTIFIER_COLUMNS = ("nhs_number", "given_name", "family_name", "dob", "postcode", "address", "uprn")

# A Unique Property Reference Number: up to 12 digits, written zero-padded to 12.
UPRN_PATTERN = r"^[0-9]{12}$"

MIN_DOB = dt.date(1900, 1, 1)

TOKEN_PATTERN = r"^[0-9a-f]{64}$"

# Outward codes A9, A99, A9A, AA9, AA99, AA9A, then the inward code 9AA; plus the special GIR 0AA.
POSTCODE_PATTERN = (
    r"^(([A-Z][0-9]{1,2}|[A-Z][0-9][A-Z]|[A-Z]{2}[0-9]{1,2}|[A-Z]{2}[0-9][A-Z])[0-9][A-Z]{2}|GIR0AA)$"
)

# Honorifics removed from names as whole words. Deliberately excludes words that are also real
# surnames (LORD, LADY, MASTER, KING...).
TITLES = ("MR", "MRS", "MS", "MISS", "MX", "DR", "PROF", "REV", "REVD", "SIR", "DAME", "FR")

_SEX_CODES = {
    "M": ("1", "M", "MALE"),
    "F": ("2", "F", "FEMALE"),
}
SEX_CODES = _SEX_CODES  # the registered model applies the same codes (record/registry.standardise_rules)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def check_source_columns(df: DataFrame, source: SourceConfig) -> None:
    """Raise InputDataError naming the table and every mapped or passthrough column it lacks."""
    present = set(df.columns)
    problems = [
        f"missing column {column!r} (mapped to {field})"
        for column, field in source.columns.source_columns().items()
        if column not in present
    ]
    problems += [
        f"missing column {column!r} (passthrough)" for column in source.passthrough if column not in present
    ]
    if problems:
        raise InputDataError(f"table {source.name}: " + "; ".join(problems))
    clashes = [column for column in source.passthrough
               if column in OUTPUT_COLUMNS or column in source.columns.identifiers]
    if clashes:
        raise ConfigError(
            f"source {source.name}: passthrough column(s) {clashes} clash with standardised column names"
        )


def _checks_row(df_standardised: DataFrame, record_ids: DataFrame | None = None) -> dict:
    """Row count, null ids and duplicated ids from one aggregation of record_id alone, and whether
    any row has an identifier, from a probe that stops at the first row with one. Neither needs
    the whole standardisation computed, so a source is standardised once, when it is written.
    `record_ids` (one column, record_id) is a cheaper frame of the same ids, if there is one."""
    ids = df_standardised.select("record_id") if record_ids is None else record_ids
    per_id = ids.groupBy("record_id").agg(F.count(F.lit(1)).alias("n"))
    row = per_id.agg(
        F.coalesce(F.sum("n"), F.lit(0)).alias("rows"),
        F.coalesce(F.sum(F.when(F.col("record_id").isNull(), F.col("n"))), F.lit(0)).alias("null_ids"),
        F.count(F.when(F.col("record_id").isNotNull() & (F.col("n") > 1), F.lit(1))).alias("duplicated_ids"),
    ).first().asDict()
    any_identifier = F.greatest(*[F.col(c).isNotNull() for c in IDENTIFIER_COLUMNS if c in df_standardised.columns])
    # Only a constant comes back to the driver, never a value.
    row["has_identifier"] = int(bool(df_standardised.where(any_identifier).select(F.lit(1)).take(1)))
    return row


def _raise_for_ids(stats: dict, source_name: str) -> None:
    problems = []
    if stats["null_ids"]:
        problems.append(f"{stats['null_ids']} row(s) with a null record_id")
    if stats["duplicated_ids"]:
        problems.append(f"{stats['duplicated_ids']} record_id value(s) occur more than once")
    if problems:
        raise InputDataError(f"table {source_name}: column 'record_id': " + "; ".join(problems))


def _raise_for_identifiers(stats: dict, source_name: str) -> None:
    if not stats["rows"]:
        raise InputDataError(f"table {source_name}: has no rows")
    if not stats["has_identifier"]:
        raise InputDataError(
            f"table {source_name}: every identifier column ({', '.join(IDENTIFIER_COLUMNS)}) "
            f"is null in all {stats['rows']} row(s) after standardisation"
        )


def check_standardised(df_standardised: DataFrame, source_name: str, *, record_ids: DataFrame | None = None) -> dict:
    """Raise InputDataError when record_id has nulls or duplicates, the table is empty, or every
    identifier is null in every row (counts only, never ids), from one `_checks_row`; returns its
    counts. Pass `record_ids` (from `source_record_ids`) to count ids without the standardisation:
    its nickname join cannot be pruned, so counting ids on the standardised frame cleans every
    given name as well."""
    stats = _checks_row(df_standardised, record_ids)
    _raise_for_ids(stats, source_name)
    _raise_for_identifiers(stats, source_name)
    return stats


def check_record_ids(df_standardised: DataFrame, source_name: str, *, record_ids: DataFrame | None = None) -> dict:
    """`check_standardised`'s record_id checks alone (null or duplicated ids), for a set of changed
    records, which may be empty."""
    stats = _checks_row(df_standardised, record_ids)
    _raise_for_ids(stats, source_name)
    return stats


def source_record_ids(df: DataFrame, source: SourceConfig) -> DataFrame:
    """The source's record ids as `standardise_source` writes them, and nothing else."""
    return df.select(_record_id(source))


def _record_id(source: SourceConfig) -> Column:
    return F.col(source.columns.record_id).cast("string").alias("record_id")


# --------------------------------------------------------------------------------------------
# Column transforms
# --------------------------------------------------------------------------------------------


def _raw_present(raw: Column) -> Column:
    return F.coalesce(F.trim(raw.cast("string")) != "", F.lit(False))


def token_nhs_number(raw: Column) -> Column:
    """A 64-hex HMAC token, trimmed and lowercased, when well formed; else null."""
    token = F.lower(F.trim(raw.cast("string")))
    return F.when(token.rlike(TOKEN_PATTERN), token)


def token_nhs_number_status(raw: Column) -> Column:
    token = F.lower(F.trim(raw.cast("string")))
    return (
        F.when(raw.isNull() | (token == ""), F.lit("missing"))
        .when(token.rlike(TOKEN_PATTERN), F.lit("token"))
        .otherwise(F.lit("bad_format"))
    )


def squash_postcode(raw: Column) -> Column:
    """Uppercase with every space removed: the form the postcode pattern is checked against."""
    return F.regexp_replace(F.upper(raw.cast("string")), r"[\s\u00A0]", "")


def postcode_columns(raw: Column) -> dict[str, Column]:
    """postcode ('LS1 4AB'), postcode_area ('LS'), postcode_district ('LS1'), postcode_sector ('LS1 4')."""
    return postcode_parts(squash_postcode(raw))


def postcode_parts(squashed: Column) -> dict[str, Column]:
    """`postcode_columns` from a squashed postcode (pass a column: every part reads it)."""
    valid = F.coalesce(squashed.rlike(POSTCODE_PATTERN), F.lit(False))
    n = F.length(squashed)
    outward = squashed.substr(F.lit(1), n - 3)
    inward = squashed.substr(n - 2, F.lit(3))
    return {
        "postcode": F.when(valid, F.concat_ws(" ", outward, inward)),
        "postcode_area": F.when(valid, F.regexp_extract(outward, r"^[A-Z]+", 0)),
        "postcode_district": F.when(valid, outward),
        "postcode_sector": F.when(valid, F.concat(outward, F.lit(" "), inward.substr(1, 1))),
    }


def clean_name(raw: Column) -> Column:
    """Uppercase; drop apostrophes; hyphens and other punctuation to spaces; drop titles; null if empty."""
    s = F.upper(raw.cast("string"))
    s = F.translate(s, "'\u2018\u2019`\u00B4", "")  # apostrophes go (O'BRIEN -> OBRIEN)
    s = F.regexp_replace(s, r"[^\p{L} ]", " ")  # hyphens, dashes, dots, digits, other punctuation
    # Words, not regexes, from here: cheaper than a regex per rule over every name.
    titles = F.array(*[F.lit(title) for title in TITLES])
    words = F.filter(F.split(s, " "), lambda word: (word != "") & ~F.array_contains(titles, word))
    # nullif, not when(s != "", s): Spark evaluates nullif's argument once, when's twice.
    return F.nullif(F.array_join(words, " "), F.lit(""))


def first_token(name: Column) -> Column:
    return F.when(name.isNotNull(), F.split(name, " ").getItem(0))


def phonetic(name: Column) -> Column:
    """Double Metaphone primary code via Splink's Scala UDF; null for null or empty names."""
    return F.when(name.isNotNull(), F.call_function("Dmetaphone", name))


def parse_dob(raw: Column, raw_type: T.DataType, formats: list[str], today: dt.date | None = None) -> Column:
    """First format that parses wins; impossible, pre-1900 and future dates become null."""
    if isinstance(raw_type, T.DateType):
        parsed = raw
    elif isinstance(raw_type, (T.TimestampType, T.TimestampNTZType)):
        parsed = F.to_date(raw)
    else:
        text = F.trim(raw.cast("string"))
        parsed = F.coalesce(*[F.to_date(F.try_to_timestamp(text, F.lit(fmt))) for fmt in formats])
    upper = F.lit(today) if today is not None else F.current_date()
    return F.when((parsed >= F.lit(MIN_DOB)) & (parsed <= upper), parsed)


# Formats whose first two parts are a day and a month in some order (dd/MM/yyyy, MM-dd-yy...).
_DAY_MONTH_FORMAT = re.compile(r"^(dd|MM)[^A-Za-z](dd|MM)[^A-Za-z](yyyy|yy)$")
_DAY_MONTH_VALUE = r"^\s*(\d{1,2})\D(\d{1,2})\D\d{2,4}\s*$"
DOB_SAMPLE_ROWS = 20_000
# The share of sampled dates that can only be read in the other order beyond which the configured
# order is wrong (or mixed): a month-first column has about 60% such dates, while typed swaps in a
# day-first one make a few percent at most (and those fail to parse anyway).
_WRONG_ORDER_SHARE = 0.05


def check_dob_order(df: DataFrame, source: SourceConfig) -> str | None:
    """Check a text DOB column's day/month order against a sample of its values, before anything
    is written. A date whose second part is over 12 can only be month-first, and one whose first
    part is over 12 only day-first: a column configured day-first that holds month-first dates
    (or mixes both) is refused, naming the table, column and shares. Returns a note on how many
    sampled dates could be read either way (for the report), or None. Only counts leave Spark."""
    orders = {m.group(1) for fmt in source.dob_formats if (m := _DAY_MONTH_FORMAT.match(fmt))}
    column = source.columns.dob
    if column is None or len(orders) != 1 or not isinstance(df.schema[column].dataType, T.StringType):
        return None
    configured = orders.pop()
    first = F.regexp_extract(F.col(column), _DAY_MONTH_VALUE, 1).cast("int")
    second = F.regexp_extract(F.col(column), _DAY_MONTH_VALUE, 2).cast("int")
    sample = df.where(F.col(column).rlike(_DAY_MONTH_VALUE)).limit(DOB_SAMPLE_ROWS).select(
        first.alias("a"), second.alias("b"))
    row = sample.agg(
        F.count(F.lit(1)).alias("n"),
        F.count(F.when((F.col("a") > 12) & (F.col("b") <= 12), 1)).alias("day_first"),
        F.count(F.when((F.col("b") > 12) & (F.col("a") <= 12), 1)).alias("month_first"),
        F.count(F.when((F.col("a") <= 12) & (F.col("b") <= 12), 1)).alias("either"),
    ).first()
    if not row["n"]:
        return None
    share = {k: row[k] / row["n"] for k in ("day_first", "month_first", "either")}
    wrong = "month_first" if configured == "dd" else "day_first"
    if share[wrong] > _WRONG_ORDER_SHARE:
        found = "month-first (MM/dd)" if wrong == "month_first" else "day-first (dd/MM)"
        raise InputDataError(
            f"table {source.name}: column {column!r}: {share[wrong]:.1%} of sampled dates can only be "
            f"read {found}, but dob_formats say {sorted(source.dob_formats)}; "
            f"{share['month_first' if wrong == 'day_first' else 'day_first']:.1%} can only be read the configured way. "
            "Fix dob_formats (or the extract) for this source"
        )
    return (f"{source.name}.dob: {share['either']:.0%} of sampled dates read either way round; "
            f"the configured order ({configured} first) decides them")


def clean_address(raw: Column) -> Column:
    """Free-text address: upper case, apostrophes dropped, other punctuation to spaces, whitespace
    collapsed to one space and trimmed; null when nothing is left."""
    s = F.upper(raw.cast("string"))
    s = F.translate(s, "'\u2018\u2019`\u00B4", "")
    s = F.regexp_replace(s, r"[^\p{L}\p{N}]+", " ")
    return F.nullif(F.trim(s), F.lit(""))


def address_lines(lines: list[Column]) -> Column:
    """Several address lines as one free-text address (blank lines skipped), cleaned."""
    return clean_address(F.concat_ws(" ", *[line.cast("string") for line in lines]))


def clean_uprn(raw: Column) -> Column:
    """A UPRN as 12 digits: spaces removed, zero-padded from fewer digits; anything else (letters,
    more than 12 digits, all zeros) is null."""
    s = F.regexp_replace(F.trim(raw.cast("string")), r"\s", "")
    padded = F.lpad(s, 12, "0")
    ok = s.rlike(r"^[0-9]{1,12}$") & (padded != F.lit("0" * 12))
    return F.when(F.coalesce(ok, F.lit(False)), padded)


def clean_identifier(raw: Column) -> Column:
    """Another identifier: trimmed, upper case; null when blank."""
    return F.nullif(F.upper(F.trim(raw.cast("string"))), F.lit(""))


def plain_postcode(squashed: Column) -> dict[str, Column]:
    """`postcode_parts` for a postcode of another country, from the squashed text (see
    `squash_postcode`): that text as it is, and no area, district or sector."""
    return {
        "postcode": F.nullif(squashed, F.lit("")),
        **{name: F.lit(None).cast("string") for name in ("postcode_area", "postcode_district", "postcode_sector")},
    }


def clean_sex(raw: Column) -> Column:
    """'M' or 'F' from 1/2, M/F, Male/Female (any case); 0/9/U/I/unknown/indeterminate and junk -> null."""
    s = F.upper(F.trim(raw.cast("string")))
    return F.when(s.isin(*_SEX_CODES["M"]), F.lit("M")).when(s.isin(*_SEX_CODES["F"]), F.lit("F"))


# --------------------------------------------------------------------------------------------
# Nickname roots (reference data, built on the driver from the `nicknames` package)
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def nickname_root_pairs() -> tuple[tuple[str, str], ...]:
    """(NAME, ROOT) pairs, uppercased, for every name whose root differs from itself.

    The package's data is loose (it lists BILL as a nickname of ROBERT and WILLIAM, MARGARET as a
    nickname of GRETCHEN), so the rule is a deterministic heuristic, tuned to keep formal names stable:
    - a name of 5+ letters that has nicknames of its own is a formal name: it is its own root
      (WILLIAM, ROBERT, MARGARET, ELIZABETH, GEORGE);
    - any other name with canonical forms maps to the longest of them, ties alphabetically
      (BILL -> WILLIAM, BOB -> ROBERT, LIZ/BETH/BETTY -> ELIZABETH, JIM -> JAMES, TOM -> THOMAS);
    - names the package does not know map to themselves (no row here; the join falls back).
    Alphabetical-first alone was worse (BILL -> ROBERT, JOHN -> IAN, RON -> AARON). Known oddities
    remain (RON -> VERONICA, DAN -> SHERIDAN), which is why the root is only one comparison level.
    """
    from nicknames import NickNamer

    namer = NickNamer()
    has_nicknames = {name for name, nicks in namer.nickname_lookup.items() if nicks}
    pairs = []
    for name, canonicals in namer.canonical_lookup.items():
        candidates = sorted((c for c in canonicals if c.isalpha()), key=lambda c: (-len(c), c))
        if not name.isalpha() or not candidates or (name in has_nicknames and len(name) >= 5):
            continue
        if candidates[0] != name:
            pairs.append((name.upper(), candidates[0].upper()))
    return tuple(sorted(pairs))


def nickname_reference(spark: SparkSession) -> DataFrame:
    """Small reference DataFrame: nickname_name -> nickname_root (no record data).

    An inline SQL table, so Spark holds it in the plan; a frame made from a Python list would
    start a Python worker in every query that reads it. The names are letters only."""
    rows = ", ".join(f"('{name}', '{root}')" for name, root in nickname_root_pairs())
    return spark.sql(f"select * from values {rows} as nicknames(__nick_name, __nick_root)")


def add_given_name_root(df: DataFrame, given_name_col: str = "given_name") -> DataFrame:
    """Add `given_name_root` by a broadcast join on the nickname reference; unknown names map to themselves."""
    ref = F.broadcast(nickname_reference(df.sparkSession))
    joined = df.join(ref, df[given_name_col] == ref["__nick_name"], "left")
    return joined.withColumn(
        "given_name_root", F.coalesce(F.col("__nick_root"), F.col(given_name_col))
    ).drop("__nick_name", "__nick_root")


# --------------------------------------------------------------------------------------------
# Top level
# --------------------------------------------------------------------------------------------


def _missing(kind: str = "string") -> Column:
    return F.lit(None).cast(kind)


def standardise_source(df: DataFrame, source: SourceConfig, *, today: dt.date | None = None) -> DataFrame:
    """The canonical, cleaned frame for one source: STANDARD_COLUMNS, RAW_PRESENT_COLUMNS, the
    source's other identifiers, passthrough. A field the source does not map is null."""
    check_source_columns(df, source)
    cols = source.columns
    raw = {field: F.col(column) for field, column in cols.as_dict().items()}
    raw_types = {f.name: f.dataType for f in df.schema.fields}

    def mapped(field: str, clean, kind: str = "string") -> Column:
        return clean(raw[field]) if field in raw else _missing(kind)

    def present(field: str) -> Column:
        return _raw_present(raw[field]) if field in raw else F.lit(False)

    identifiers = list(cols.identifiers)
    # Three projections, so each cleaned value is computed once and then read by every column
    # derived from it (Spark evaluates an expression again in each CASE branch that repeats it).
    if cols.nhs_number is None:
        nhs, nhs_status = F.lit(None).cast("string"), F.lit("missing")
    elif source.nhs_number_form == "token":
        nhs, nhs_status = token_nhs_number(raw["nhs_number"]), token_nhs_number_status(raw["nhs_number"])
    else:
        nhs, nhs_status = digits_only(raw["nhs_number"]), None  # from the cleaned digits, below
    dob = (parse_dob(raw["dob"], raw_types[cols.dob], source.dob_formats, today) if "dob" in raw
           else _missing("date"))
    address = address_lines([F.col(c) for c in cols.address_columns()]) if cols.address is not None else _missing()
    cleaned = df.select(
        F.lit(source.name).alias("source"),
        _record_id(source),
        nhs.cast("string").alias("__nhs"),
        *([] if nhs_status is None else [nhs_status.alias("nhs_number_status")]),
        mapped("given_name", clean_name).alias("__given_name"),
        mapped("family_name", clean_name).alias("family_name"),
        dob.alias("dob"),
        mapped("sex", clean_sex).alias("sex"),
        mapped("postcode", squash_postcode).alias("__postcode"),
        address.alias("address"),
        mapped("uprn", clean_uprn).alias("uprn"),
        present("dob").alias("dob_raw_present"),
        present("sex").alias("sex_raw_present"),
        present("postcode").alias("postcode_raw_present"),
        present("uprn").alias("uprn_raw_present"),
        *[clean_identifier(F.col(column)).alias(name) for name, column in cols.identifiers.items()],
        *[F.col(c) for c in source.passthrough],
    )
    postcode = (plain_postcode if source.postcode_form == "plain" else postcode_parts)(F.col("__postcode"))
    stage = cleaned.select(
        "source",
        "record_id",
        "__nhs",
        status_of_digits(F.col("__nhs")).alias("nhs_number_status") if nhs_status is None else "nhs_number_status",
        first_token(F.col("__given_name")).alias("given_name"),
        "family_name",
        "dob",
        "sex",
        *[column.alias(name) for name, column in postcode.items()],
        "address",
        "uprn",
        *RAW_PRESENT_COLUMNS,
        *identifiers,
        *source.passthrough,
    )
    stage = add_given_name_root(stage)
    out = stage.select(
        "source",
        "record_id",
        F.when(F.col("nhs_number_status").isin("valid", "token"), F.col("__nhs")).alias("nhs_number"),
        "nhs_number_status",
        # Ten digits that fail only the checksum are kept apart for Splink's one-edit level: the
        # typo's nearest valid neighbour is the evidence. Never used for the deterministic pass.
        F.when(F.col("nhs_number_status").isin("valid", "bad_checksum"), F.col("__nhs")).alias("nhs_number_digits"),
        "given_name",
        "given_name_root",
        phonetic(F.col("given_name")).alias("given_name_phonetic"),
        "family_name",
        first_token(F.col("family_name")).alias("family_name_first"),
        phonetic(F.col("family_name")).alias("family_name_phonetic"),
        "dob",
        F.year("dob").alias("dob_year"),
        F.month("dob").alias("dob_month"),
        F.dayofmonth("dob").alias("dob_day"),
        "sex",
        "postcode",
        "postcode_area",
        "postcode_district",
        "postcode_sector",
        "address",
        "uprn",
        *RAW_PRESENT_COLUMNS,
        *identifiers,
        *source.passthrough,
    )
    return out


def union_sources(frames: list[DataFrame]) -> DataFrame:
    """Standardised frames of several sources in one; pass-through columns a source lacks become null."""
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
