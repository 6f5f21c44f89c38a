"""One contract, two backends: every test runs on heap and on RocksDB."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamcore.errors import KeyEncodingError, SerializationError, StateDescriptorConflictError, StateError
from streamcore.state import (
    KeyContext,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    StateBackendFactory,
    StateTtlConfig,
    ValueStateDescriptor,
)
from streamcore.time import ManualClock

BACKENDS = ["heap", "rocksdb"]


class Env:
    """A keyed backend with its key context and clock, opened on a factory."""

    def __init__(self, kind, path, uid="op", fresh=True):
        self.clock = ManualClock(1_000)
        self.factory = StateBackendFactory(kind, path, self.clock)
        self.factory.open(fresh=fresh)
        self.kc = KeyContext(128)
        self.backend = self.factory.create(uid, self.kc)

    def key(self, k):
        self.kc.set_current_key(k)
        return self

    def close(self):
        self.factory.close()


@pytest.fixture(params=BACKENDS)
def env(request, tmp_path):
    e = Env(request.param, tmp_path / "state")
    yield e
    e.close()


def test_value_state(env):
    s = env.backend.get_state(ValueStateDescriptor("v", default=0))
    env.key("a")
    assert s.value() == 0
    s.update(5)
    env.key("b")
    assert s.value() == 0
    s.update((1, "x"))
    assert s.value() == (1, "x")
    env.key("a")
    assert s.value() == 5
    s.clear()
    assert s.value() == 0
    s.update(3)
    s.update(None)
    assert s.value() == 0


def test_list_state(env):
    s = env.backend.get_state(ListStateDescriptor("l"))
    env.key(1)
    assert s.get() == []
    s.add("x")
    s.add_all(["y", "z"])
    assert s.get() == ["x", "y", "z"]
    env.key(2)
    s.update([1, 2])
    assert s.get() == [1, 2]
    s.update([])
    assert s.get() == []
    env.key(1)
    got = s.get()
    got.append("mutated")
    assert s.get() == ["x", "y", "z"]
    s.clear()
    assert s.get() == []


def test_map_state(env):
    s = env.backend.get_state(MapStateDescriptor("m"))
    env.key("k")
    assert s.is_empty() and s.get("a") is None and not s.contains("a")
    s.put("a", 1)
    s.put_all({"b": 2, ("t", 1): [3]})
    assert s.get("a") == 1 and s.contains(("t", 1)) and not s.is_empty()
    assert dict(s.items()) == {"a": 1, "b": 2, ("t", 1): [3]}
    assert set(s.keys()) == {"a", "b", ("t", 1)} and sorted(map(str, s.values())) == ["1", "2", "[3]"]
    for k in list(s.keys()):
        s.remove(k)
    assert s.is_empty()
    s.put(1, "x")
    env.key("other")
    assert s.is_empty()
    env.key("k")
    s.clear()
    assert s.is_empty()


def test_reducing_state(env):
    s = env.backend.get_state(ReducingStateDescriptor("r", lambda a, b: a + b))
    env.key("k")
    assert s.get() is None
    for i in range(5):
        s.add(i)
    assert s.get() == 10
    s.clear()
    assert s.get() is None


def test_namespaces_separate_state(env):
    s = env.backend.get_state(ValueStateDescriptor("v"))
    lst = env.backend.get_state(ListStateDescriptor("l"))
    env.key("k")
    for ns in [None, (0, 10), (10, 20)]:
        s.set_namespace(ns)
        lst.set_namespace(ns)
        s.update(str(ns))
        lst.add(str(ns))
    for ns in [None, (0, 10), (10, 20)]:
        s.set_namespace(ns)
        lst.set_namespace(ns)
        assert s.value() == str(ns) and lst.get() == [str(ns)]


def test_same_descriptor_twice_returns_the_same_handle_and_conflicts_are_errors(env):
    a = env.backend.get_state(ValueStateDescriptor("x"))
    assert env.backend.get_state(ValueStateDescriptor("x")) is a
    with pytest.raises(StateDescriptorConflictError):
        env.backend.get_state(MapStateDescriptor("x"))
    with pytest.raises(StateDescriptorConflictError):
        env.backend.get_state(ValueStateDescriptor("x", ttl=10))


def test_processing_time_ttl(env):
    v = env.backend.get_state(ValueStateDescriptor("v", ttl=100))
    m = env.backend.get_state(MapStateDescriptor("m", ttl=100))
    lst = env.backend.get_state(ListStateDescriptor("l", ttl=100))
    r = env.backend.get_state(ReducingStateDescriptor("r", max, ttl=100))
    env.key("k")
    v.update(1)
    m.put("a", 1)
    lst.add(1)
    r.add(4)
    env.clock.advance(50)
    m.put("b", 2)
    lst.add(2)
    assert v.value() == 1 and dict(m.items()) == {"a": 1, "b": 2} and lst.get() == [1, 2] and r.get() == 4
    env.clock.advance(60)
    assert v.value() is None and dict(m.items()) == {"b": 2} and lst.get() == [2] and r.get() is None
    env.clock.advance(100)
    assert env.backend.cleanup_expired() >= 1
    assert m.is_empty() and lst.get() == []


def test_event_time_ttl_and_update_on_read(env):
    v = env.backend.get_state(
        ValueStateDescriptor("v", ttl=StateTtlConfig(100, time="event", update_on_read=True))
    )
    env.key("k")
    env.backend.event_time = 0
    v.update("x")
    env.backend.event_time = 90
    assert v.value() == "x"  # renewed: lives until 190
    env.backend.event_time = 150
    assert v.value() == "x"
    env.backend.event_time = 1_000
    assert v.value() is None


def test_cleanup_removes_expired_entries_of_every_key(env):
    v = env.backend.get_state(ValueStateDescriptor("v", ttl=10))
    for k in range(50):
        env.key(k)
        v.update(k)
    env.clock.advance(20)
    assert env.backend.cleanup_expired() == 50
    image = env.backend.snapshot(canonical=True)
    assert image["states"]["v"]["rows"] == []


@pytest.mark.parametrize("budget", [1, 7, 64])
def test_incremental_cleanup_examines_a_budget_and_goes_round(env, budget):
    """With a budget each call removes at most about that many; repeated calls remove every expired entry."""
    v = env.backend.get_state(ValueStateDescriptor("v", ttl=10))
    m = env.backend.get_state(MapStateDescriptor("m", ttl=10))
    plain = env.backend.get_state(ValueStateDescriptor("plain"))
    assert env.backend.has_ttl_states()
    for k in range(40):
        env.key(k)
        v.update(k)
        m.put("a", k)
        plain.update(k)
    env.clock.advance(20)
    for k in range(40, 45):  # alive: written after the others expired
        env.key(k)
        v.update(k)
    removed = []
    for _ in range(200):
        n = env.backend.cleanup_expired(budget)
        assert n <= max(budget, 2)  # each of the two TTL'd states gets at least one entry
        removed.append(n)
        if sum(removed) == 80:
            break
    assert sum(removed) == 80
    rows = env.backend.snapshot(canonical=True)["states"]
    assert sorted(r[1] for r in rows["v"]["rows"]) == list(range(40, 45))
    assert rows["m"]["rows"] == [] and len(rows["plain"]["rows"]) == 40
    assert env.backend.cleanup_expired(budget) == 0


def test_no_ttl_states_means_no_cleanup(env):
    env.backend.get_state(ValueStateDescriptor("plain"))
    assert not env.backend.has_ttl_states()
    assert env.backend.cleanup_expired(10) == 0


def test_timers_dedup_order_delete(env):
    t = env.backend.timer_service()
    for key, ts in [("b", 30), ("a", 10), ("a", 10), ("c", 20), ("a", 40)]:
        env.key(key)
        t.register_event_time_timer(ts)
    env.key("c")
    t.delete_event_time_timer(20)
    t.delete_event_time_timer(999)
    assert t.num_event_timers() == 3
    fired = []
    while (x := t.pop_event_timer(35)) is not None:
        fired.append(x)
    assert fired == [(10, "a", None), (30, "b", None)]
    env.key("z")
    t.register_event_time_timer(5)  # registered in the past: fires at the next pop
    assert t.pop_event_timer(35) == (5, "z", None)
    assert t.pop_event_timer(100) == (40, "a", None)
    assert t.pop_event_timer(10**18) is None


def test_processing_timers_and_namespaces(env):
    t = env.backend.timer_service("other")
    env.key(7)
    t.register_processing_time_timer(500, (0, 1))
    t.register_processing_time_timer(400)
    assert t.next_processing_time() == 400
    assert t.pop_processing_timer(450) == (400, 7, None)
    assert t.pop_processing_timer(450) is None
    assert t.pop_processing_timer(500) == (500, 7, (0, 1))
    assert t.num_processing_timers() == 0


def test_many_timers_fire_in_order(env):
    t = env.backend.timer_service()
    import random

    rnd = random.Random(3)
    expected = set()
    for _ in range(3_000):
        ts = rnd.randint(0, 10_000)
        k = rnd.randint(0, 300)
        env.key(k)
        t.register_event_time_timer(ts)
        expected.add((ts, k))
    got = []
    for wm in range(0, 10_001, 997):
        while (x := t.pop_event_timer(wm)) is not None:
            got.append((x[0], x[1]))
            assert x[0] <= wm
    while (x := t.pop_event_timer(10**9)) is not None:
        got.append((x[0], x[1]))
    assert [g[0] for g in got] == sorted(g[0] for g in got)
    assert set(got) == expected and len(got) == len(expected)


def test_time_ordered_state(env):
    buf = env.backend.time_ordered_state("buf")
    env.key("k")
    for ts in [5, -3, 5, 10, 0]:
        buf.add(ts, f"v{ts}")
    env.key("other")
    buf.add(4, "o")
    env.key("k")
    before = buf.entries_scanned
    assert buf.range(0, 5) == [(0, "v0"), (5, "v5"), (5, "v5")]
    assert buf.entries_scanned - before == 3
    assert buf.range(6, 9) == [] and buf.range(5, 4) == []
    assert [ts for ts, _ in buf.scan_prefix()] == [-3, 0, 5, 5, 10]
    assert buf.counts(["k", "other", "none"]) == [5, 1, 0]
    index = sorted(buf.index_entries())
    buf.remove_entries([e for e in index if e[0] <= 5 and e[2] == "k"])
    assert buf.scan_prefix() == [(10, "v10")] and not buf.is_empty()
    assert buf.count() == 2 and buf.counts(["k", "other"]) == [1, 1]
    buf.remove_entries([e for e in index if e[0] == 10])
    assert buf.is_empty() and buf.counts(["k"]) == [0]


def test_time_ordered_remove_by_sequence(env):
    buf = env.backend.time_ordered_state("buf")
    seqs = {}
    for key in ("a", "b"):
        env.key(key)
        for ts in (3, 1, 3, 7):
            seqs.setdefault(key, []).append((ts, buf.add(ts, f"{key}{ts}")))
    env.key("a")
    buf.remove(*seqs["a"][0])  # one of the two entries at ts 3
    buf.remove(99, 12345)  # absent: no error
    assert [ts for ts, _ in buf.scan_prefix()] == [1, 3, 7]
    buf.remove_entries([(*seqs["b"][1], "b"), (*seqs["b"][3], "b"), (*seqs["a"][1], "a")])
    assert [ts for ts, _ in buf.scan_prefix()] == [3, 7]
    env.key("b")
    assert [ts for ts, _ in buf.scan_prefix()] == [3, 3]
    assert env.kc.key == "b"
    assert buf.counts(["a", "b", "zz"]) == [2, 2, 0]


def test_time_ordered_add_batch(env):
    """The bulk add equals one add per element: same order, fresh sequence numbers, no current key used."""
    buf = env.backend.time_ordered_state("buf")
    env.key("a")
    first = buf.add(5, "a5")
    keys = ["a", "b", "a", "b", "a"]
    kb = env.kc.key_bytes_batch(keys)
    env.key("zz")
    seqs = buf.add_batch(keys, kb, [7, 1, 3, 1, 7], ["a7", "b1", "a3", "b1'", "a7'"])
    assert len(set(seqs)) == 5 and min(seqs) > first
    assert env.kc.key == "zz" and buf.is_empty()
    env.key("a")
    assert buf.scan_prefix() == [(3, "a3"), (5, "a5"), (7, "a7"), (7, "a7'")]
    env.key("b")
    assert buf.range(1, 1) == [(1, "b1"), (1, "b1'")]
    buf.remove_entries([(1, seqs[1], "b")])
    assert buf.scan_prefix() == [(1, "b1'")]
    assert buf.add_batch([], [], [], []) == []


def test_many_keys_across_key_groups(env):
    s = env.backend.get_state(ValueStateDescriptor("v"))
    groups = set()
    for i in range(2_000):
        env.key(("user", i))
        groups.add(env.kc.key_group)
        s.update(i)
    assert len(groups) == 128
    for i in range(0, 2_000, 37):
        env.key(("user", i))
        assert s.value() == i


def test_write_batch_reads_its_own_writes(env):
    s = env.backend.get_state(ValueStateDescriptor("v"))
    lst = env.backend.get_state(ListStateDescriptor("l"))
    env.backend.begin_batch()
    env.key("k")
    s.update(1)
    lst.add("a")
    assert s.value() == 1 and lst.get() == ["a"]
    s.update(s.value() + 1)
    env.backend.end_batch()
    assert s.value() == 2 and lst.get() == ["a"]


KEYS = st.one_of(
    st.integers(-5, 5), st.text("xy", max_size=2), st.tuples(st.integers(0, 2), st.text("q", max_size=1))
)
OPS = st.lists(
    st.tuples(st.sampled_from(["set", "clear", "add", "put", "remove", "timer"]), KEYS, st.integers(0, 20)),
    max_size=60,
)


@settings(max_examples=25)
@given(ops=OPS)
def test_snapshot_restores_into_either_backend(ops, tmp_path_factory):
    images = {}
    for kind in BACKENDS:
        e = Env(kind, tmp_path_factory.mktemp("s"))
        v = e.backend.get_state(ValueStateDescriptor("v"))
        lst = e.backend.get_state(ListStateDescriptor("l"))
        m = e.backend.get_state(MapStateDescriptor("m"))
        t = e.backend.timer_service()
        buf = e.backend.time_ordered_state("b")
        for op, key, n in ops:
            e.key(key)
            if op == "set":
                v.update(n)
            elif op == "clear":
                v.clear()
                lst.clear()
            elif op == "add":
                lst.add(n)
                buf.add(n, key)
            elif op == "put":
                m.put(n % 4, n)
            elif op == "remove":
                m.remove(n % 4)
            else:
                t.register_event_time_timer(n)
        images[kind] = e.backend.snapshot(canonical=True)
        e.close()
    assert _normal(images["heap"]) == _normal(images["rocksdb"])
    for source in BACKENDS:
        for target in BACKENDS:
            e = Env(target, tmp_path_factory.mktemp("r"))
            e.backend.restore(images[source])
            for _name, d in [
                ("v", ValueStateDescriptor("v")),
                ("l", ListStateDescriptor("l")),
                ("m", MapStateDescriptor("m")),
            ]:
                e.backend.get_state(d)
            e.backend.timer_service()
            e.backend.time_ordered_state("b")
            assert _normal(e.backend.snapshot(canonical=True)) == _normal(images["heap"])
            e.close()


def _normal(image):
    def norm_rows(kind, rows):
        out = []
        for _kg, key, ns, payload in rows:
            if kind == "map":
                payload = sorted(map(tuple, payload), key=repr)
            out.append((repr(key), repr(ns), repr(payload)))
        return sorted(out)

    states = {n: norm_rows(s["storage"], s["rows"]) for n, s in image["states"].items() if s["rows"]}
    timers = {n: sorted(map(repr, t["event"])) for n, t in image["timers"].items()}
    buffers = {n: sorted(repr((r[0], r[1], r[3])) for r in rows) for n, rows in image["time_ordered"].items()}
    return states, timers, buffers


def test_rocksdb_reopen_sees_the_same_state(tmp_path):
    e = Env("rocksdb", tmp_path)
    v = e.backend.get_state(ValueStateDescriptor("v"))
    m = e.backend.get_state(MapStateDescriptor("m"))
    t = e.backend.timer_service()
    e.key("k")
    v.update(41)
    m.put("x", [1])
    t.register_event_time_timer(77)
    e.close()
    e = Env("rocksdb", tmp_path, fresh=False)
    v = e.backend.get_state(ValueStateDescriptor("v"))
    m = e.backend.get_state(MapStateDescriptor("m"))
    e.key("k")
    assert v.value() == 41 and m.get("x") == [1]
    assert e.backend.timer_service().pop_event_timer(100) == (77, "k", None)
    e.close()


def test_rocksdb_unserializable_value_names_state_and_type(tmp_path):
    e = Env("rocksdb", tmp_path)
    v = e.backend.get_state(ValueStateDescriptor("profile"))
    e.key("k")
    with pytest.raises(SerializationError) as info:
        v.update(object())
    assert "profile" in str(info.value) and "object" in str(info.value) and "serializer" in str(info.value)
    e.close()


def test_custom_serializer(tmp_path):
    import json

    class Json:
        def dumps(self, v):
            return json.dumps(v).encode()

        def loads(self, b):
            return json.loads(b)

    e = Env("rocksdb", tmp_path)
    v = e.backend.get_state(ValueStateDescriptor("j", serializer=Json()))
    e.key(1)
    v.update({"a": [1, 2]})
    assert v.value() == {"a": [1, 2]}
    e.close()


def test_rocksdb_metrics(tmp_path):
    e = Env("rocksdb", tmp_path)
    v = e.backend.get_state(ValueStateDescriptor("v"))
    for i in range(100):
        e.key(i)
        v.update(i)
        v.value()
    m = e.backend.metrics()["v"]
    assert m["reads"] >= 100 and m["writes"] >= 100
    e.close()


class _Framed:
    """A custom serializer that msgpack alone cannot read: a magic prefix before msgpack bytes."""

    MAGIC = b"SC1"

    @staticmethod
    def dumps(value):
        from streamcore.serde import msgpack_dumps

        return _Framed.MAGIC + msgpack_dumps(value)

    @staticmethod
    def loads(data):
        from streamcore.serde import msgpack_loads

        assert data[:3] == _Framed.MAGIC, f"not written by this serializer: {data!r}"
        return msgpack_loads(data[3:])


def _custom_descriptors():
    return [
        ValueStateDescriptor("v", serializer=_Framed),
        ListStateDescriptor("l", serializer=_Framed),
        MapStateDescriptor("m", serializer=_Framed),
        ValueStateDescriptor("t", ttl=StateTtlConfig(10_000), serializer=_Framed),
    ]


@pytest.mark.parametrize("source", BACKENDS)
@pytest.mark.parametrize("register_first", [False, True])
def test_canonical_restore_writes_with_the_descriptors_serializer(source, register_first, tmp_path_factory):
    """A savepoint of states with a custom serializer restores into RocksDB readable by that serializer.

    States may be registered before the restore or after it (operators register in open()).
    """
    e = Env(source, tmp_path_factory.mktemp("s"))
    v, lst, m, t = (e.backend.get_state(d) for d in _custom_descriptors())
    for k in ("a", ("b", 2)):
        e.key(k)
        v.update({"k": k})
        lst.add_all([1, (2, 3)])
        m.put("x", [k])
        t.update(7)
    image = e.backend.snapshot(canonical=True)
    e.close()
    r = Env("rocksdb", tmp_path_factory.mktemp("r"))
    if register_first:
        handles = [r.backend.get_state(d) for d in _custom_descriptors()]
        r.backend.restore(image)
    else:
        r.backend.restore(image)
        handles = [r.backend.get_state(d) for d in _custom_descriptors()]
    v, lst, m, t = handles
    for k in ("a", ("b", 2)):
        r.key(k)
        assert v.value() == {"k": k}
        assert lst.get() == [1, (2, 3)]
        assert m.get("x") == [k]
        assert t.value() == 7
    r.close()


def test_restored_states_not_registered_yet_survive_snapshots(tmp_path_factory):
    """Rows of a restored state the operator has not asked for are carried in both kinds of snapshot."""
    e = Env("heap", tmp_path_factory.mktemp("s"))
    e.backend.get_state(ValueStateDescriptor("v", serializer=_Framed))
    e.key("a").backend.get_state(ValueStateDescriptor("v", serializer=_Framed)).update(5)
    image = e.backend.snapshot(canonical=True)
    e.close()
    r = Env("rocksdb", tmp_path_factory.mktemp("r"))
    r.backend.restore(image)
    assert r.backend.snapshot(canonical=True)["states"]["v"]["rows"] == image["states"]["v"]["rows"]
    native = r.backend.snapshot(canonical=False)
    r2 = Env("rocksdb", tmp_path_factory.mktemp("r2"))
    r2.backend.restore(native)
    v = r2.backend.get_state(ValueStateDescriptor("v", serializer=_Framed))
    assert r2.key("a") and v.value() == 5
    r.close()
    r2.close()


def test_native_restored_rows_of_a_state_registered_before_the_restore(tmp_path_factory):
    """Rows carried in a native image reach a state the operator registered before the restore (setup)."""
    from streamcore.serde import msgpack_dumps, msgpack_loads

    h = Env("heap", tmp_path_factory.mktemp("h"))
    h.key("a").backend.get_state(ValueStateDescriptor("x")).update(41)
    canonical = msgpack_loads(msgpack_dumps(h.backend.snapshot(True)))
    h.close()
    path = tmp_path_factory.mktemp("r")
    a = Env("rocksdb", path)
    a.backend.restore(canonical)  # "x" is not registered: its rows wait
    native = msgpack_loads(msgpack_dumps(a.backend.snapshot(False)))
    assert "x" in native["restored_rows"]
    a.close()
    b = Env("rocksdb", path, fresh=False)  # the same files, as a native restore sees them
    x = b.backend.get_state(ValueStateDescriptor("x"))
    b.backend.restore(native)
    assert b.key("a") and x.value() == 41
    assert "restored_rows" not in b.backend.snapshot(False)
    b.close()


class _Pickled:
    @staticmethod
    def dumps(value):
        import pickle

        return pickle.dumps(value)

    @staticmethod
    def loads(data):
        import pickle

        return pickle.loads(data)


def _ttl_descriptors():
    return [
        ValueStateDescriptor("v", ttl=1000, serializer=_Pickled),
        ReducingStateDescriptor("r", lambda a, b: a + b, ttl=1000, serializer=_Pickled),
        ListStateDescriptor("l", ttl=1000, serializer=_Pickled),
        MapStateDescriptor("m", ttl=1000, serializer=_Pickled),
        ValueStateDescriptor("plain", serializer=_Pickled),
    ]


def _read_all(e):
    hs = [e.backend.get_state(d) for d in _ttl_descriptors()]
    out = []
    for k in range(5):
        e.key(k)
        for ns in (None, ("w", k)):
            for h in hs:
                h.set_namespace(ns)
            out.append((hs[0].value(), hs[1].get(), hs[2].get(), dict(hs[3].items()), hs[4].value()))
    return out


@pytest.mark.parametrize("source", BACKENDS)
@pytest.mark.parametrize("target", BACKENDS)
def test_unregistered_restored_states_survive_a_snapshot_on_either_backend(source, target, tmp_path_factory):
    """TTL and plain states, namespaces, custom serializer: restore, snapshot unregistered, restore again."""
    from streamcore.serde import msgpack_dumps, msgpack_loads

    a = Env(source, tmp_path_factory.mktemp("a"))
    hs = [a.backend.get_state(d) for d in _ttl_descriptors()]
    for k in range(5):
        a.key(k)
        for ns in (None, ("w", k)):
            for h in hs:
                h.set_namespace(ns)
            hs[0].update({"k": k})
            hs[1].add(k)
            hs[2].add_all([k, k + 1])
            hs[3].put(k, [k])
            hs[4].update((k,))
    expected = _read_all(a)
    image = msgpack_loads(msgpack_dumps(a.backend.snapshot(True)))
    a.close()
    b = Env(target, tmp_path_factory.mktemp("b"))
    b.backend.restore(image)
    again = msgpack_loads(msgpack_dumps(b.backend.snapshot(True)))  # nothing registered yet
    assert _read_all(b) == expected
    b.close()
    c = Env(target, tmp_path_factory.mktemp("c"))
    c.backend.restore(again)
    assert _read_all(c) == expected
    c.close()


# -- bulk operations: one namespace, explicit keys ------------------------------------------------
def _sum_fold(table, keys, values, new_keys):
    """Adds each value to its key's sum (what a window's count/sum accumulators do)."""
    for k, v in zip(keys, values, strict=True):
        if k in table:
            table[k] = table[k] + v
        else:
            table[k] = v
            new_keys.append(k)


def _append_fold(table, keys, values, new_keys):
    """Appends to each key's list in place: changing a value in place must count as storing it."""
    for k, v in zip(keys, values, strict=True):
        if k in table:
            table[k].append(v)
        else:
            table[k] = [v]
            new_keys.append(k)


def test_value_fold_many_get_many_clear_many(env):
    s = env.backend.get_state(ValueStateDescriptor("v", default=-1))
    env.key("z")
    s.set_namespace("elsewhere")
    s.update(100)
    assert s.fold_many("w1", ["a", "b", "a"], [1, 2, 3], _sum_fold) == ["a", "b"]
    assert s.fold_many("w1", ["b", "c"], [10, 20], _sum_fold) == ["c"]
    assert s.fold_many("w2", ["a"], [7], _sum_fold) == ["a"]
    # Absent values are None, not the descriptor's default; namespaces are apart.
    assert s.get_many("w1", ["a", "b", "c", "d"]) == [4, 12, 20, None]
    assert s.get_many("w2", ["a", "b"]) == [7, None]
    assert s.get_many("never", ["a"]) == [None]
    # The current key and namespace are neither needed nor changed.
    assert env.kc.key == "z" and s.value() == 100
    # Per-key reads see bulk writes, and bulk reads see per-key writes.
    s.set_namespace("w1")
    env.key("b")
    assert s.value() == 12
    s.update(13)
    assert s.get_many("w1", ["b"]) == [13]
    assert s.get_many("w1", ["a", "c"], clear=True) == [4, 20]
    assert s.get_many("w1", ["a", "b", "c"]) == [None, 13, None]
    s.clear_many("w1", ["b", "not-there"])
    assert s.get_many("w1", ["a", "b", "c"]) == [None, None, None]
    s.clear_many("never", ["a"])
    assert s.get_many("w2", ["a"]) == [7]


def test_clearing_absent_keys_leaves_the_other_keys_alone(env):
    """As many keys as the namespace holds, one of them absent: the namespace is not emptied."""
    s = env.backend.get_state(ValueStateDescriptor("v"))
    lst = env.backend.get_state(ListStateDescriptor("l"))
    s.fold_many("w", ["a", "b"], [1, 2], _sum_fold)
    lst.add_many("w", ["a", "b"], [1, 2])
    s.clear_many("w", ["a", "x"])
    lst.clear_many("w", ["a", "x"])
    assert s.get_many("w", ["a", "b"]) == [None, 2]
    assert lst.get_many("w", ["a", "b"]) == [[], [2]]
    s.fold_many("w", ["c"], [3], _sum_fold)
    assert s.get_many("w", ["b", "y"], clear=True) == [2, None]
    assert s.get_many("w", ["c"]) == [3]


def test_value_fold_many_keeps_values_changed_in_place(env):
    s = env.backend.get_state(ValueStateDescriptor("v"))
    s.fold_many(("w", 1), ["a", "b"], ["x", "y"], _append_fold)
    assert s.fold_many(("w", 1), ["a", "a", "c"], ["x2", "x3", "z"], _append_fold) == ["c"]
    assert s.get_many(("w", 1), ["a", "b", "c"]) == [["x", "x2", "x3"], ["y"], ["z"]]


def test_value_fold_many_reads_only_keys_known_to_have_values(env):
    s = env.backend.get_state(ValueStateDescriptor("v"))
    s.fold_many("w", ["a", "b"], [1, 2], _sum_fold)
    # Every key with a value is in ``known``: the result is the same as without the hint.
    assert s.fold_many("w", ["a", "x", "b"], [1, 1, 1], _sum_fold, known={"a", "b"}) == ["x"]
    assert s.get_many("w", ["a", "b", "x"]) == [2, 3, 1]


def test_bulk_operations_inside_a_write_batch_read_their_own_writes(env):
    s = env.backend.get_state(ValueStateDescriptor("v"))
    lst = env.backend.get_state(ListStateDescriptor("l"))
    env.backend.begin_batch()
    s.fold_many("w", ["a", "b"], [1, 2], _sum_fold)
    s.fold_many("w", ["a"], [5], _sum_fold)
    lst.add_many("w", ["a", "b", "a"], [1, 2, 3])
    assert s.get_many("w", ["a", "b"]) == [6, 2]
    assert lst.get_many("w", ["a", "b"], clear=True) == [[1, 3], [2]]
    assert lst.get_many("w", ["a"]) == [[]]
    env.backend.end_batch()
    assert s.get_many("w", ["a", "b"]) == [6, 2] and lst.get_many("w", ["a", "b"]) == [[], []]


def test_list_add_many_get_many_clear_many(env):
    lst = env.backend.get_state(ListStateDescriptor("l"))
    env.key("z")
    lst.add("untouched")
    lst.add_many((0, 10), ["a", "b", "a"], [1, 2, 3])
    lst.add_many((0, 10), ["a"], [4])
    lst.add_many((10, 20), ["a"], [9])
    got = lst.get_many((0, 10), ["a", "b", "c"])
    assert got == [[1, 3, 4], [2], []]
    got[0].append("mutated")  # copies
    assert lst.get_many((0, 10), ["a"]) == [[1, 3, 4]]
    assert env.kc.key == "z" and lst.get() == ["untouched"]
    lst.set_namespace((0, 10))
    env.key("a")
    assert lst.get() == [1, 3, 4]
    assert lst.get_many((0, 10), ["a"], clear=True) == [[1, 3, 4]]
    assert lst.get() == []
    lst.clear_many((0, 10), ["b", "nobody"])
    assert lst.get_many((0, 10), ["a", "b"]) == [[], []]
    assert lst.get_many((10, 20), ["a"]) == [[9]]


@pytest.mark.parametrize("op", ["fold_many", "add_many"])
def test_bulk_operations_reject_keys_without_an_encoding(env, op):
    if op == "fold_many":
        s = env.backend.get_state(ValueStateDescriptor("v"))
        call = lambda: s.fold_many("w", ["ok", object()], [1, 2], _sum_fold)  # noqa: E731
    else:
        s = env.backend.get_state(ListStateDescriptor("l"))
        call = lambda: s.add_many("w", ["ok", object()], [1, 2])  # noqa: E731
    with pytest.raises(KeyEncodingError):
        call()


def test_bulk_operations_of_ttl_state_are_refused_with_a_hint(env):
    v = env.backend.get_state(ValueStateDescriptor("v", ttl=1_000))
    lst = env.backend.get_state(ListStateDescriptor("l", ttl=1_000))
    for call in (
        lambda: v.fold_many("w", ["a"], [1], _sum_fold),
        lambda: v.get_many("w", ["a"]),
        lambda: v.clear_many("w", ["a"]),
        lambda: v.hold_live_values(_SetCodec()),
        lambda: lst.add_many("w", ["a"], [1]),
        lambda: lst.get_many("w", ["a"]),
        lambda: lst.clear_many("w", ["a"]),
    ):
        with pytest.raises(StateError, match="without TTL"):
            call()


class _SetCodec:
    """Live sets (not msgpack-able), stored as sorted lists."""

    def __init__(self):
        self.encoded = 0

    def encode(self, value):
        self.encoded += 1
        return sorted(value)

    def decode(self, stored):
        return set(stored)


def _union_fold(table, keys, values, new_keys):
    for k, v in zip(keys, values, strict=True):
        live = table.get(k)
        if live is None:
            table[k] = {v}
            new_keys.append(k)
        else:
            live.add(v)


@pytest.mark.parametrize("cache_entries", [0, 1, 100])
def test_live_values_are_stored_encoded_and_restore_into_either_backend(env, cache_entries, tmp_path_factory):
    s = env.backend.get_state(ValueStateDescriptor("live"))
    s.hold_live_values(_SetCodec(), cache_entries)
    env.backend.begin_batch()
    s.fold_many("w", ["a", "b", "a"], [3, 1, 2], _union_fold)
    s.fold_many("w", ["b", "c"], [5, 4], _union_fold)
    env.backend.end_batch()
    env.key("c")
    s.set_namespace("w")
    assert s.value() == {4}
    s.update({4, 6})
    assert s.get_many("w", ["a", "b", "c", "d"]) == [{2, 3}, {1, 5}, {4, 6}, None]
    # A snapshot holds the stored form, written back from any cache by the backend itself.
    image = env.backend.snapshot(canonical=True)
    rows = sorted((key, ns, payload) for _kg, key, ns, payload in image["states"]["live"]["rows"])
    assert rows == [("a", "w", [2, 3]), ("b", "w", [1, 5]), ("c", "w", [4, 6])]
    assert s.get_many("w", ["a"]) == [{2, 3}]  # the live values stay as they were
    for target in BACKENDS:
        e = Env(target, tmp_path_factory.mktemp("live"))
        restored = e.backend.get_state(ValueStateDescriptor("live"))
        restored.hold_live_values(_SetCodec(), cache_entries)
        e.backend.restore(image)
        assert restored.get_many("w", ["a", "b", "c"]) == [{2, 3}, {1, 5}, {4, 6}]
        e.close()


def test_live_values_restored_before_the_codec_is_given_are_decoded(env):
    image = {"states": {"live": {"kind": "value", "storage": "value", "rows": [[0, "a", "w", [1, 2]]]}}}
    env.backend.restore(image)
    s = env.backend.get_state(ValueStateDescriptor("live"))
    s.hold_live_values(_SetCodec())
    assert s.get_many("w", ["a"]) == [{1, 2}]


def test_rocksdb_write_back_cache_is_flushed_into_native_snapshots(tmp_path):
    """The database itself (what native checkpoints copy) holds every cached value after a snapshot."""
    e = Env("rocksdb", tmp_path)
    s = e.backend.get_state(ValueStateDescriptor("live"))
    codec = _SetCodec()
    s.hold_live_values(codec, 1_000)
    e.backend.begin_batch()
    s.fold_many("w", ["a", "b"], [1, 2], _union_fold)
    e.backend.end_batch()
    assert codec.encoded == 0  # cached: nothing serialized yet
    e.backend.snapshot(canonical=False)
    assert codec.encoded == 2
    e.close()
    e = Env("rocksdb", tmp_path, fresh=False)
    plain = e.backend.get_state(ValueStateDescriptor("live"))
    assert plain.get_many("w", ["a", "b"]) == [[1], [2]]
    e.close()


BULK_OPS = st.lists(
    st.tuples(
        st.sampled_from(["fold", "get", "take", "clear_many", "update", "value", "clear", "snapshot"]),
        st.sampled_from(["w1", "w2", None]),
        st.lists(st.sampled_from("abcd"), min_size=1, max_size=5),
        st.integers(0, 9),
    ),
    max_size=40,
)


@settings(max_examples=30)
@given(ops=BULK_OPS, cache_entries=st.sampled_from([0, 1, 3, 50]))
def test_bulk_and_per_key_operations_agree_with_a_dict_on_both_backends(ops, cache_entries, tmp_path_factory):
    """Live sets through bulk and per-key operations, snapshots between (cache flushes), against a model."""
    for kind in BACKENDS:
        e = Env(kind, tmp_path_factory.mktemp("bulk"))
        s = e.backend.get_state(ValueStateDescriptor("live"))
        s.hold_live_values(_SetCodec(), cache_entries)
        model: dict[tuple, set] = {}
        e.backend.begin_batch()
        for op, ns, keys, n in ops:
            if op == "fold":
                values = [n + i for i in range(len(keys))]
                new = s.fold_many(ns, keys, values, _union_fold, known={k for (m, k) in model if m == ns})
                assert new == [k for k in dict.fromkeys(keys) if (ns, k) not in model]
                for k, v in zip(keys, values, strict=True):
                    model.setdefault((ns, k), set()).add(v)
            elif op in ("get", "take"):
                keys = list(dict.fromkeys(keys))  # get_many takes distinct keys
                assert s.get_many(ns, keys, clear=op == "take") == [model.get((ns, k)) for k in keys]
                if op == "take":
                    for k in keys:
                        model.pop((ns, k), None)
            elif op == "clear_many":
                s.clear_many(ns, keys)
                for k in keys:
                    model.pop((ns, k), None)
            else:
                e.key(keys[0])
                s.set_namespace(ns)
                if op == "update":
                    s.update({n})
                    model[(ns, keys[0])] = {n}
                elif op == "value":
                    assert s.value() == model.get((ns, keys[0]))
                elif op == "clear":
                    s.clear()
                    model.pop((ns, keys[0]), None)
                else:
                    e.backend.end_batch()
                    rows = e.backend.snapshot(canonical=True)["states"]["live"]["rows"]
                    assert {(ns_, key): set(v) for _kg, key, ns_, v in rows} == model
                    e.backend.begin_batch()
        e.backend.end_batch()
        e.close()


def test_timers_registered_after_the_queue_emptied_pop_in_order_with_deletes(env):
    """Once every stored timer is cached, new ones (in any order) and deletes keep the order."""
    t = env.backend.timer_service()
    env.key("warm")
    t.register_event_time_timer(0)
    assert t.pop_event_timer(0) is not None and t.pop_event_timer(10**9) is None
    import random

    rnd = random.Random(3)
    registered = set()
    for i in rnd.sample(range(5_000), 2_000):
        env.key(i % 7)
        t.register_event_time_timer(i)
        registered.add((i, i % 7))
    for ts, key in rnd.sample(sorted(registered), 300):
        env.key(key)
        t.delete_event_time_timer(ts)
        registered.discard((ts, key))
    got = []
    while (x := t.pop_event_timer(10**9)) is not None:
        got.append((x[0], x[1]))
    assert got == sorted(registered)


BUFFER_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abc"), st.integers(0, 9)),
        st.tuples(
            st.just("add_batch"),
            st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 9)), min_size=1, max_size=6),
        ),
        st.tuples(st.just("remove"), st.sampled_from("abc"), st.integers(0, 30)),
        st.tuples(st.just("expire"), st.integers(0, 9)),
        st.tuples(st.just("range"), st.sampled_from("abc"), st.integers(-1, 9), st.integers(-1, 9)),
        st.tuples(st.sampled_from(["prefix", "counts", "native_snapshot", "canonical_restore"])),
    ),
    max_size=50,
)


def _check_buffer_key(e: Env, buf: Any, model: list[tuple[int, int, str, str]], key: str) -> None:
    e.key(key)
    mine = sorted((ts, seq, v) for ts, seq, k, v in model if k == key)
    assert buf.scan_prefix() == [(ts, v) for ts, _, v in mine]
    assert buf.is_empty() == (not mine)


@settings(max_examples=60)
@given(ops=BUFFER_OPS, cache_entries=st.sampled_from([0, 1, 3, 1_000]))
def test_time_ordered_state_agrees_with_a_model_on_both_backends(ops, cache_entries, tmp_path_factory):
    """Adds, removals, expiry, probes, snapshots and restores against a list of ``(ts, seq, key, value)``.

    On RocksDB ``cache_entries`` sizes the recent tier: 0 writes through, 1 and 3 spill
    often, 1,000 keeps everything in memory until a snapshot writes it.
    """
    for kind in BACKENDS:
        path = tmp_path_factory.mktemp("buf")
        e = Env(kind, path)
        buf = e.backend.time_ordered_state("b", cache_entries=cache_entries)
        model: list[tuple[int, int, str, str]] = []
        for n, op in enumerate(ops, 1):
            e.backend.begin_batch()
            if op[0] == "add":
                e.key(op[1])
                seq = buf.add(op[2], f"v{n}")
                model.append((op[2], seq, op[1], f"v{n}"))
            elif op[0] == "add_batch":
                keys = [k for k, _ in op[1]]
                values = [f"v{n}.{i}" for i in range(len(keys))]
                tss = [ts for _, ts in op[1]]
                seqs = buf.add_batch(keys, e.kc.key_bytes_batch(keys), tss, values)
                model += list(zip(tss, seqs, keys, values, strict=True))
            elif op[0] == "remove":
                mine = sorted(m for m in model if m[2] == op[1])
                e.key(op[1])
                if mine:
                    victim = mine[op[2] % len(mine)]
                    buf.remove(victim[0], victim[1])
                    model.remove(victim)
                buf.remove(99, 10**9)  # absent: no error
            elif op[0] == "expire":
                gone = [m for m in model if m[0] <= op[1]]
                buf.remove_entries([(ts, seq, key) for ts, seq, key, _ in gone])
                model = [m for m in model if m[0] > op[1]]
            elif op[0] == "range":
                e.key(op[1])
                lo, hi = op[2], op[3]
                want = sorted((ts, seq, v) for ts, seq, k, v in model if k == op[1] and lo <= ts <= hi)
                assert buf.range(lo, hi) == [(ts, v) for ts, _, v in want]
            elif op[0] == "prefix":
                for key in "abc":
                    _check_buffer_key(e, buf, model, key)
            elif op[0] == "counts":
                assert buf.counts(list("abcz")) == [sum(1 for m in model if m[2] == k) for k in "abcz"]
                assert buf.count() == len(model)
                assert sorted(buf.index_entries()) == sorted((ts, seq, k) for ts, seq, k, _ in model)
            e.backend.end_batch()
            if op[0] == "native_snapshot" and kind == "rocksdb":
                # What a native checkpoint copies: the database alone, reopened.
                e.backend.snapshot(canonical=False)
                e.close()
                e = Env(kind, path, fresh=False)
                buf = e.backend.time_ordered_state("b", cache_entries=cache_entries)
            elif op[0] == "canonical_restore":
                image = e.backend.snapshot(canonical=True)
                e.close()
                path = tmp_path_factory.mktemp("buf")
                e = Env(kind, path)
                buf = e.backend.time_ordered_state("b", cache_entries=cache_entries)
                e.backend.restore(image)
        for key in "abc":
            _check_buffer_key(e, buf, model, key)
        assert buf.counts(list("abc")) == [sum(1 for m in model if m[2] == k) for k in "abc"]
        e.close()
