"""Changelog rows: kinds, their short strings, and applying a changelog."""

from __future__ import annotations

import pytest

from streamcore import Change, RowKind
from streamcore.changelog import apply_changelog
from streamcore.errors import ChangelogError


def test_short_strings_round_trip():
    for kind in RowKind:
        assert RowKind.from_short_string(kind.short_string) is kind
    assert [k.short_string for k in RowKind] == ["+I", "-U", "+U", "-D"]


def test_unknown_short_string_names_the_valid_ones():
    with pytest.raises(ChangelogError, match=r"\+I, -U, \+U, -D"):
        RowKind.from_short_string("+X")


def test_apply_changelog_updates_and_deletes():
    log = [
        Change(RowKind.INSERT, ("a", 1)),
        Change(RowKind.INSERT, ("b", 1)),
        Change(RowKind.UPDATE_BEFORE, ("a", 1)),
        Change(RowKind.UPDATE_AFTER, ("a", 2)),
        Change(RowKind.DELETE, ("b", 1)),
    ]
    assert apply_changelog(log) == [("a", 2)]


def test_retracting_an_absent_row_is_an_error():
    with pytest.raises(ChangelogError, match="does not hold"):
        apply_changelog([Change(RowKind.DELETE, ("a", 1))])


def test_changes_survive_the_value_codec_as_changes():
    from streamcore.serde import msgpack_dumps, msgpack_loads

    log = [Change(RowKind.UPDATE_BEFORE, ("a", (1, None), 2**70)), ("plain", 1), [Change(RowKind.INSERT, ())]]
    back = msgpack_loads(msgpack_dumps(log))
    assert back == log
    assert type(back[0]) is Change and back[0].kind is RowKind.UPDATE_BEFORE
    assert type(back[1]) is tuple and type(back[2][0]) is Change


def test_as_change_and_row_key_selector():
    from streamcore.changelog import as_change, row_key_selector

    assert as_change(("a", 1)) == Change(RowKind.INSERT, ("a", 1))
    d = Change(RowKind.DELETE, ("a", 1))
    assert as_change(d) is d
    key = row_key_selector(lambda r: r[0])
    assert key(d) == key(("a", 2)) == "a"
