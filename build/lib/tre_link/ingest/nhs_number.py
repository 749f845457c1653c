"""NHS number Modulus 11, as Spark column expressions (no Python UDFs on the hot path).

The check digit of digits d1..d9 is 11 - (sum(d_i * (11 - i)) mod 11); a result of 11 means 0
and a result of 10 means the number can never be valid.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def _weighted_sum(nine_digits: Column) -> Column:
    return sum((F.substring(nine_digits, i, 1).cast("int") * (11 - i) for i in range(1, 10)), F.lit(0))


def check_digit(nine_digits: Column) -> Column:
    """The Modulus 11 check digit for a 9-digit string; null when no valid check digit exists."""
    raw = F.lit(11) - (_weighted_sum(nine_digits) % 11)
    return F.when(raw == 11, F.lit(0)).when(raw == 10, F.lit(None)).otherwise(raw).cast("int")


def passes_modulus_11(ten_digits: Column) -> Column:
    """True when a 10-digit string's last digit is its Modulus 11 check digit.

    Equivalently, the nine weighted digits plus the check digit are a multiple of 11: one sum,
    which also rejects stems whose check digit would be 10, since no digit can make that up."""
    weighted = sum((F.substring(ten_digits, i, 1).cast("int") * (11 - i) for i in range(1, 10)), F.lit(0))
    return F.coalesce((weighted + F.substring(ten_digits, 10, 1).cast("int")) % 11 == 0, F.lit(False))


def digits_only(raw: Column) -> Column:
    """Strip spaces, dashes and other separators that providers put inside NHS numbers."""
    return F.regexp_replace(F.trim(raw.cast("string")), r"[\s\-./]", "")


def nhs_number_status(raw: Column) -> Column:
    """Why a raw NHS number is or is not usable: valid, missing, bad_format, bad_checksum or test_range."""
    return status_of_digits(digits_only(raw))


def status_of_digits(digits: Column) -> Column:
    """nhs_number_status from `digits_only` of the raw value. Pass a column, not an expression:
    it is read by every branch, and Spark evaluates a branch's own expressions again."""
    return (
        F.when(digits.isNull() | (digits == ""), F.lit("missing"))
        .when(~digits.rlike(r"^[0-9]{10}$"), F.lit("bad_format"))
        .when(~passes_modulus_11(digits), F.lit("bad_checksum"))
        .when(digits.startswith("999"), F.lit("test_range"))
        .otherwise(F.lit("valid"))
    )


def clean_nhs_number(raw: Column) -> Column:
    """The 10-digit NHS number when it is valid and outside the 999 test range, else null."""
    return F.when(nhs_number_status(raw) == "valid", digits_only(raw))
