"""streamcore's one value codec: every value round-trips through every state type on both backends.

Values are nested (ints of any size, floats with nan/inf, str, bytes, bool, None, tuples,
lists, dicts), written through each state type, read back, snapshotted canonically (what a
savepoint stores), encoded as checkpoint files are, and restored into either backend.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcore.checkpoint.storage import encode_operator_image, join_operator_image, read_sections
from streamcore.errors import SerializationError
from streamcore.serde import msgpack_dumps, msgpack_loads
from streamcore.state import (
    KeyContext,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateBackendFactory,
    ValueStateDescriptor,
)
from streamcore.time import ManualClock

BACKENDS = ["heap", "rocksdb"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.binary(max_size=4),
)
hashables = st.recursive(scalars, lambda inner: st.tuples(inner, inner) | st.tuples(inner), max_leaves=6)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.tuples(inner),
        st.dictionaries(hashables, inner, max_size=3),
    ),
    max_leaves=10,
)


def shape(value: Any) -> Any:
    """Types and values all the way down; nan equals nan here, and 1 differs from True and 1.0."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(v) for v in value])
    if isinstance(value, dict):
        return ("dict", [(shape(k), shape(v)) for k, v in value.items()])
    return (type(value).__name__, repr(value))


def test_the_codec_round_trips_big_ints_inside_tuples() -> None:
    value = (1, ("a", 2**70, -(2**64) - 3), [2**64 - 1, -(2**63)])
    assert shape(msgpack_loads(msgpack_dumps(value))) == shape(value)


@given(values)
def test_the_codec_round_trips_nested_values(value: Any) -> None:
    assert shape(msgpack_loads(msgpack_dumps(value))) == shape(value)


def test_unknown_extension_types_are_a_clear_error() -> None:
    import msgpack

    with pytest.raises(SerializationError, match="extension type 9"):
        msgpack_loads(msgpack.packb(msgpack.ExtType(9, b"")))


def test_packing_from_two_threads_at_once_never_mixes_buffers() -> None:
    # The job thread and the asynchronous checkpoint writer both pack: each needs its own packer.
    samples = [(i, "x" * (i % 50), [2**70 + i, (i,)], {"k": i}) for i in range(200)]
    expected = [msgpack_dumps(s) for s in samples]
    errors: list[str] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(200):
            for s, e in zip(samples, expected, strict=True):
                if msgpack_dumps(s) != e:
                    errors.append(repr(s))
                    return

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_failed_pack_leaves_the_packer_clean() -> None:
    with pytest.raises(SerializationError, match="set"):
        msgpack_dumps([1, 2, {3}])
    assert msgpack_loads(msgpack_dumps([1, 2])) == [1, 2]


class _Env:
    def __init__(self, kind: str, path: Any) -> None:
        self.factory = StateBackendFactory(kind, path, ManualClock(0))
        self.factory.open(fresh=True)
        self.kc = KeyContext(128)
        self.backend = self.factory.create("op", self.kc)
        b = self.backend
        self.v = b.get_state(ValueStateDescriptor("v"))
        self.lst = b.get_state(ListStateDescriptor("l"))
        self.m = b.get_state(MapStateDescriptor("m"))
        self.r = b.get_state(ReducingStateDescriptor("r", lambda a, c: c))
        self.buf = b.time_ordered_state("b")

    def write(self, rows: list[Any]) -> None:
        for i, value in enumerate(rows):
            self.kc.set_current_key(i)
            self.v.update(value)
            self.lst.add_all([value, value])
            self.m.put(("u", i), value)
            self.r.add(value)
            self.buf.add(i, value)

    def read(self, n: int) -> list[Any]:
        out = []
        for i in range(n):
            self.kc.set_current_key(i)
            out.append(
                (self.v.value(), self.lst.get(), self.m.get(("u", i)), self.r.get(), self.buf.range(i, i))
            )
        return out

    def close(self) -> None:
        self.factory.close()


def _through_files(image: Any) -> Any:
    """Encode as a checkpoint's operator file is written, and read it back."""
    data, index = encode_operator_image(image, 128)
    path = _through_files.dir / "op.state"  # type: ignore[attr-defined]
    path.write_bytes(data)
    return join_operator_image(read_sections(path, index))


@settings(max_examples=15)
@given(rows=st.lists(values.filter(lambda v: v is not None), min_size=1, max_size=4))
def test_every_state_type_round_trips_on_both_backends_and_across_restores(rows, tmp_path_factory):
    expected = [shape((v, [v, v], v, v, [(i, v)])) for i, v in enumerate(rows)]
    images = {}
    for kind in BACKENDS:
        e = _Env(kind, tmp_path_factory.mktemp(kind))
        e.write(rows)
        assert [shape(r) for r in e.read(len(rows))] == expected, kind
        _through_files.dir = tmp_path_factory.mktemp("files")  # type: ignore[attr-defined]
        images[kind] = _through_files(e.backend.snapshot(canonical=True))
        e.close()
    for source in BACKENDS:
        for target in BACKENDS:  # heap -> RocksDB among them
            e = _Env(target, tmp_path_factory.mktemp(f"{source}-{target}"))
            e.backend.restore(images[source])
            assert [shape(r) for r in e.read(len(rows))] == expected, (source, target)
            e.close()


@pytest.mark.parametrize("kind", BACKENDS)
def test_equal_keys_stay_equal_on_both_backends(kind, tmp_path):
    # True == 1 == 1.0 in Python, so the heap backend's dicts treat them as one key; RocksDB must agree.
    e = _Env(kind, tmp_path)
    e.kc.set_current_key(True)
    e.v.update("t")
    e.m.put(1.0, "one")
    e.kc.set_current_key(1)
    assert e.v.value() == "t"
    assert e.m.get(True) == "one"
    e.kc.set_current_key(1.0)
    assert e.v.value() == "t"
    e.close()
