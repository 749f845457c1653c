"""Disclosure control: suppression under 10, rounding to the nearest 5, rates from released counts."""

from __future__ import annotations

import pytest

from tre_link.platform.disclosure import release_count, release_counts, release_rate


@pytest.mark.parametrize(
    ("raw", "released"),
    [
        (0, None),
        (1, None),
        (9, None),
        (10, 10),
        (11, 10),
        (12, 10),
        (13, 15),
        (14, 15),
        (15, 15),
        (17, 15),
        (18, 20),
        (22, 20),
        (23, 25),
        (1000, 1000),
        (1002, 1000),
        (1003, 1005),
    ],
)
def test_release_count_edges(raw, released):
    assert release_count(raw) == released


def test_release_count_none_passes_through_as_suppressed():
    assert release_count(None) is None


@pytest.mark.parametrize("bad", [12.0, "12", True])
def test_release_count_refuses_non_integers(bad):
    with pytest.raises(TypeError):
        release_count(bad)


def test_release_count_refuses_negative():
    with pytest.raises(ValueError):
        release_count(-1)


def test_release_rate_uses_released_counts_not_raw():
    # raw 13/22 = 0.5909...; released 15/20 = 0.75
    assert release_rate(13, 22) == pytest.approx(0.75)
    assert release_rate(12, 18) == pytest.approx(10 / 20)
    assert release_rate(10, 10) == pytest.approx(1.0)


@pytest.mark.parametrize(("num", "den"), [(9, 100), (100, 9), (0, 100), (5, 5), (None, 50), (50, None)])
def test_release_rate_suppressed_when_either_count_is(num, den):
    assert release_rate(num, den) is None


def test_release_rate_zero_denominator():
    assert release_rate(0, 0) is None


def test_release_counts_mapping():
    assert release_counts({"a": 9, "b": 12, "c": 13, "d": 0}) == {"a": None, "b": 10, "c": 15, "d": None}
