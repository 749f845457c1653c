"""The Fellegi-Sunter model specification: comparisons from config, and Splink settings.

`linkage.comparisons` names the fields the model compares, each with a preset or custom levels.
The UK-health presets follow what UK health linkage needs: nickname and phonetic name agreement,
day/month swaps and year slips in dates of birth, postcode sector and district agreement for people
who moved nearby, and a one-edit NHS-number level for typos. The generic presets (exact, name,
date, address, id, postcode_plain) serve sources from elsewhere.
"""

from __future__ import annotations

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator

from tre_link.link.records import UNIQUE_ID
from tre_link.platform.config import ComparisonConfig, LinkageConfig

# The columns the comparisons read: what a plain Splink run needs of each record.
MODEL_COLUMNS = (
    UNIQUE_ID, "nhs_number_digits", "given_name", "given_name_root", "given_name_phonetic", "family_name",
    "family_name_first", "family_name_phonetic", "dob", "dob_year", "dob_month", "dob_day", "sex", "postcode",
    "postcode_sector", "postcode_district",
)

def _given_name(term_frequency: bool = True) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="given_name",
        comparison_levels=[
            cll.NullLevel("given_name"),
            cll.ExactMatchLevel("given_name", term_frequency_adjustments=term_frequency),
            cll.CustomLevel("given_name_root_l = given_name_root_r", "nickname of the same name"),
            cll.JaroWinklerLevel("given_name", 0.92),
            cll.CustomLevel("given_name_phonetic_l = given_name_phonetic_r", "phonetic match"),
            cll.JaroWinklerLevel("given_name", 0.8),
            cll.ElseLevel(),
        ],
    )


def _family_name(term_frequency: bool = True) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="family_name",
        comparison_levels=[
            cll.NullLevel("family_name"),
            cll.ExactMatchLevel("family_name", term_frequency_adjustments=term_frequency),
            cll.JaroWinklerLevel("family_name", 0.92),
            cll.CustomLevel("family_name_phonetic_l = family_name_phonetic_r", "phonetic match"),
            cll.CustomLevel("family_name_first_l = family_name_first_r", "first part of a double-barrelled name"),
            cll.JaroWinklerLevel("family_name", 0.8),
            cll.ElseLevel(),
        ],
    )


def _dob(term_frequency: bool = False) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="dob",
        comparison_levels=[
            cll.NullLevel("dob"),
            cll.ExactMatchLevel("dob", term_frequency_adjustments=term_frequency),
            cll.CustomLevel(
                "dob_year_l = dob_year_r and dob_month_l = dob_day_r and dob_day_l = dob_month_r",
                "day and month swapped",
            ),
            cll.CustomLevel(
                "dob_month_l = dob_month_r and dob_day_l = dob_day_r and abs(dob_year_l - dob_year_r) = 1",
                "year off by one",
            ),
            cll.CustomLevel(
                "(case when dob_year_l = dob_year_r then 1 else 0 end"
                " + case when dob_month_l = dob_month_r then 1 else 0 end"
                " + case when dob_day_l = dob_day_r then 1 else 0 end) = 2",
                "two of day, month, year agree",
            ),
            cll.ElseLevel(),
        ],
    )


def _postcode(term_frequency: bool = False) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="postcode",
        comparison_levels=[
            cll.NullLevel("postcode"),
            cll.ExactMatchLevel("postcode", term_frequency_adjustments=term_frequency),
            cll.ExactMatchLevel("postcode_sector"),
            cll.ExactMatchLevel("postcode_district"),
            cll.ElseLevel(),
        ],
    )


def nhs_number_one_edit() -> cll.CustomLevel:
    """Damerau-Levenshtein distance <= 1 behind a cheap guard, with the same result.

    Splink's damerau_levenshtein on Spark costs about 3 µs a pair, 15 times jaro_winkler, and
    most pairs scored or sampled hold different numbers. One edit (substitution, adjacent
    transposition, insertion or deletion) leaves two strings of 9+ characters agreeing on their
    first 4 or their last 4 characters, so the guard skips the distance only where it exceeds 1.
    Plain SQL, so the model runs the same on DuckDB (the registered pyfunc model)."""
    left, right = "nhs_number_digits_l", "nhs_number_digits_r"
    guard = (
        f"(left({left}, 4) = left({right}, 4) or right({left}, 4) = right({right}, 4)"
        f" or length({left}) < 9 or length({right}) < 9)"
    )
    return cll.CustomLevel(
        f"{guard} and damerau_levenshtein({left}, {right}) <= 1",
        "Damerau-Levenshtein distance of nhs_number_digits <= 1",
    )


def _nhs_number(one_edit: cll.ComparisonLevelCreator, term_frequency: bool = False) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name="nhs_number",
        comparison_levels=[
            cll.NullLevel("nhs_number_digits"),
            cll.ExactMatchLevel("nhs_number_digits", term_frequency_adjustments=term_frequency),
            one_edit,
            cll.ElseLevel(),
        ],
    )


# ------------------------------------------------------------------------------------------------
# Generic presets
# ------------------------------------------------------------------------------------------------

# Fields whose standardisation derives a Double Metaphone code, `<field>_phonetic`.
_PHONETIC_FIELDS = ("given_name", "family_name")


def _column(field: str) -> str:
    """The standardised column a field's comparison reads: NHS numbers by their ten digits (a
    number failing only the checksum is kept there for the one-edit level)."""
    return "nhs_number_digits" if field == "nhs_number" else field


def _exact(field: str, term_frequency: bool) -> cl.ComparisonCreator:
    if _column(field) != field:
        return _custom(field, [cll.ExactMatchLevel(_column(field), term_frequency_adjustments=term_frequency)])
    comparison = cl.ExactMatch(field)
    return comparison.configure(term_frequency_adjustments=True) if term_frequency else comparison


def _custom(field: str, levels: list) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name=field,
        comparison_levels=[cll.NullLevel(_column(field)), *levels, cll.ElseLevel()],
    )


def _name(field: str, term_frequency: bool) -> cl.CustomComparison:
    """Exact, then Jaro-Winkler 0.92, the phonetic code where the field has one, Jaro-Winkler 0.8."""
    phonetic = (
        [cll.CustomLevel(f"{field}_phonetic_l = {field}_phonetic_r", "phonetic match")]
        if field in _PHONETIC_FIELDS else []
    )
    return _custom(field, [
        cll.ExactMatchLevel(field, term_frequency_adjustments=term_frequency),
        cll.JaroWinklerLevel(field, 0.92),
        *phonetic,
        cll.JaroWinklerLevel(field, 0.8),
    ])


def _date(field: str, term_frequency: bool) -> cl.CustomComparison:
    """Exact; one typed character apart (as yyyy-MM-dd text); day and month swapped; within a
    month; within a year."""
    left, right = f"{field}_l", f"{field}_r"
    return _custom(field, [
        cll.ExactMatchLevel(field, term_frequency_adjustments=term_frequency),
        cll.CustomLevel(f"damerau_levenshtein(cast({left} as string), cast({right} as string)) <= 1",
                        "one character apart", base_dialect_str="spark"),
        cll.CustomLevel(f"year({left}) = year({right}) and month({left}) = day({right}) "
                        f"and day({left}) = month({right})", "day and month swapped", base_dialect_str="spark"),
        cll.CustomLevel(f"abs(datediff({left}, {right})) <= 31", "within a month", base_dialect_str="spark"),
        cll.CustomLevel(f"abs(datediff({left}, {right})) <= 366", "within a year", base_dialect_str="spark"),
    ])


def _address(field: str, term_frequency: bool) -> cl.CustomComparison:
    """Free text: exact; string similarity (Jaro-Winkler 0.9, for typos); at least half the words
    of the longer shared (lines missing, added or reordered); loosely similar (Jaro-Winkler 0.7)."""
    left, right = f"{field}_l", f"{field}_r"
    words_l, words_r = f"split({left}, ' ')", f"split({right}, ' ')"
    shared = f"size(array_intersect({words_l}, {words_r}))"
    return _custom(field, [
        cll.ExactMatchLevel(field, term_frequency_adjustments=term_frequency),
        cll.JaroWinklerLevel(field, 0.9),
        cll.CustomLevel(f"{shared} * 2 >= greatest(size({words_l}), size({words_r}))",
                        "at least half the words shared", base_dialect_str="spark"),
        cll.JaroWinklerLevel(field, 0.7),
    ])


def _id(field: str, term_frequency: bool, one_edit: cll.ComparisonLevelCreator | None = None) -> cl.CustomComparison:
    """Exact, or one edit apart (a substitution, transposition, insertion or deletion)."""
    column = _column(field)
    return _custom(field, [
        cll.ExactMatchLevel(column, term_frequency_adjustments=term_frequency),
        one_edit or cll.DamerauLevenshteinLevel(column, 1),
    ])


def _postcode_plain(field: str, term_frequency: bool) -> cl.CustomComparison:
    """A postcode as a plain string (other countries): exact, or one edit apart."""
    return _id(field, term_frequency)


def comparison(spec: ComparisonConfig, *, plain_splink_levels: bool = False) -> cl.ComparisonCreator:
    """The Splink comparison a config entry describes."""
    field, tf = spec.field, spec.term_frequency
    if spec.levels is not None:
        return _custom(field, [cll.CustomLevel(level.sql, level.label, base_dialect_str="spark")
                               for level in spec.levels])
    one_edit = cll.DamerauLevenshteinLevel("nhs_number_digits", 1) if plain_splink_levels else nhs_number_one_edit()
    preset = spec.preset
    if preset == "nhs_number":
        return _nhs_number(one_edit, tf)
    if preset == "uk_given_name":
        return _given_name(tf)
    if preset == "uk_family_name":
        return _family_name(tf)
    if preset == "uk_dob":
        return _dob(tf)
    if preset == "uk_postcode":
        return _postcode(tf)
    if preset in ("sex", "exact"):
        return _exact(field, tf)
    if preset == "id":
        return _id(field, tf, one_edit if field == "nhs_number" else None)
    builders = {"name": _name, "date": _date, "address": _address, "postcode_plain": _postcode_plain}
    return builders[preset](field, tf)


def build_settings(linkage: LinkageConfig, *, plain_splink_levels: bool = False) -> SettingsCreator:
    """Splink settings for linking and deduplicating all sources at once.

    Sources are unioned into one table with a source-qualified unique_id, so
    `dedupe_only` over the union is link-and-dedupe across every source.
    `plain_splink_levels` puts Splink's own Damerau-Levenshtein level where tre-link has its
    guarded one: the same model as a plain Splink user would write it (benchmark baselines).
    """
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID,
        comparisons=[comparison(spec, plain_splink_levels=plain_splink_levels) for spec in linkage.comparisons],
        blocking_rules_to_generate_predictions=list(linkage.blocking_rules_predict),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=[],
    )
