"""The directory's small pieces: durations, area codes, merge patches, event choice."""

from __future__ import annotations

import pytest

from icrs_partners.directory.areas import covering_codes, normalize_pcode
from icrs_partners.directory.durations import format_duration, parse_duration
from icrs_partners.directory.events import transition
from icrs_partners.directory.schemas import merge_patch


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT72H", 259200),
        ("P3D", 259200),
        ("pt30m", 1800),
        ("P1W", 604800),
        ("P1DT12H", 129600),
        ("PT1H30M15S", 5415),
    ],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "72H", "P1M", "P1Y", "PT1.5H", "P-1D", "", "P1DT"])
def test_durations_refuse_what_they_cannot_measure(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|years and months"):
        parse_duration(text)


def test_durations_render_in_hours() -> None:
    assert format_duration(259200) == "PT72H"
    assert format_duration(5415) == "PT1H30M15S"
    assert format_duration(60) == "PT1M"
    assert parse_duration(format_duration(2592000)) == 2592000


def test_an_area_is_covered_by_itself_and_its_ancestors_only() -> None:
    assert covering_codes("SO1101") == ["SO", "SO1", "SO11", "SO110", "SO1101"]
    assert covering_codes("SO") == ["SO"]
    assert normalize_pcode(" so11 ") == "SO11"
    for bad in ("S", "SOMALIA", "SO-11", "SO1234567890123", "11"):
        with pytest.raises(ValueError, match="P-code"):
            normalize_pcode(bad)


def test_merge_patch_follows_rfc_7396() -> None:
    target = {"a": 1, "e": {"x": 1, "y": [1, 2]}, "keep": True}
    assert merge_patch(target, {"a": None, "e": {"y": [3]}, "n": {"z": None}}) == {
        "e": {"x": 1, "y": [3]},
        "keep": True,
        "n": {},
    }
    assert target["a"] == 1  # the target is not changed in place


@pytest.mark.parametrize(
    ("before", "after", "verb"),
    [
        (False, True, "published"),
        (True, True, "updated"),
        (True, False, "withdrawn"),
        (False, False, None),
    ],
)
def test_what_routing_is_told(before: bool, after: bool, verb: str | None) -> None:
    assert transition(before=before, after=after) == verb
