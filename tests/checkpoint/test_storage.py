"""Byte formats and durable writes of checkpoint storage."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.checkpoint.storage import (
    atomic_write,
    decode_metadata,
    encode_metadata,
    encode_operator_image,
    join_operator_image,
    read_sections,
)
from streamcore.errors import CorruptCheckpointError
from streamcore.keygroups import key_group_for

keys = st.one_of(st.integers(-50, 50), st.text(max_size=4), st.tuples(st.integers(0, 5), st.text(max_size=2)))
# msgpack encodes 64-bit ints; larger ones are a SerializationError (tested in test_serde).
ints64 = st.integers(-(2**63), 2**63 - 1)
values = st.one_of(ints64, st.text(max_size=5), st.lists(ints64, max_size=3))


@st.composite
def keyed_images(draw: st.DrawFn) -> dict:
    rows = draw(st.lists(st.tuples(keys, st.sampled_from([None, "w1", (1, 2)]), values), max_size=20))
    states = {
        "v": {
            "kind": "value",
            "storage": "value",
            "rows": [[key_group_for(k, 128), k, ns, v] for k, ns, v in rows],
        },
        "empty": {"kind": "list", "storage": "list", "rows": []},
    }
    timers = draw(st.lists(st.tuples(st.integers(0, 99), keys), max_size=10))
    buffers = draw(st.lists(st.tuples(keys, st.integers(0, 99), st.integers(0, 9), values), max_size=10))
    return {
        "keyed": {
            "states": states,
            "timers": {"user": {"event": [[t, k, None] for t, k in timers], "processing": []}},
            "time_ordered": {"left": [list(b) for b in buffers]},
        },
        "operator": {"anything": [1, 2]},
    }


def _normalized(image: dict) -> dict:
    keyed = image["keyed"]
    for st_ in keyed["states"].values():
        st_["rows"].sort(key=repr)
    for t in keyed["timers"].values():
        t["event"].sort(key=repr)
    for name in keyed["time_ordered"]:
        keyed["time_ordered"][name].sort(key=repr)
    return image


@given(image=keyed_images())
def test_operator_image_round_trips_through_key_group_sections(image: dict, tmp_path_factory) -> None:
    import copy

    original = copy.deepcopy(image)
    data, index = encode_operator_image(image, 128)
    path = tmp_path_factory.mktemp("img") / "op.state"
    path.write_bytes(data)
    back = join_operator_image(read_sections(path, index))
    assert _normalized(back) == _normalized(original)
    for kind, _name, kg, _off, _len in index:
        assert kind == "head" or 0 <= kg < 128


def test_sections_can_be_read_selectively(tmp_path: Path) -> None:
    image = {
        "keyed": {
            "states": {
                "a": {"kind": "value", "storage": "value", "rows": [[3, "x", None, 1]]},
                "b": {"kind": "value", "storage": "value", "rows": [[4, "y", None, 2]]},
            }
        },
        "operator": None,
    }
    data, index = encode_operator_image(image, 128)
    (tmp_path / "f").write_bytes(data)
    only_a = join_operator_image(read_sections(tmp_path / "f", index, lambda kind, name, kg: name == "a"))
    assert only_a["keyed"]["states"]["a"]["rows"] == [[3, "x", None, 1]]
    assert only_a["keyed"]["states"]["b"]["rows"] == []


def test_metadata_validation(tmp_path: Path) -> None:
    meta = {"kind": "checkpoint", "id": 3, "t": (1, 2)}
    data = encode_metadata(meta)
    assert decode_metadata(data, "m") == meta
    with pytest.raises(CorruptCheckpointError, match="m is truncated"):
        decode_metadata(data[:-1], "m")
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        decode_metadata(data[:-1] + bytes([data[-1] ^ 1]), "m")
    with pytest.raises(CorruptCheckpointError, match="bad magic"):
        decode_metadata(b"XXXX" + data[4:], "m")
    with pytest.raises(CorruptCheckpointError, match="truncated"):
        decode_metadata(b"SC", "m")


def test_atomic_write_replaces_without_temp_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "_metadata"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["_metadata"]
