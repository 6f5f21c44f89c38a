"""Keyed state paths on heap and RocksDB, beside a raw rocksdict floor in the same run.

- value-state read-modify-write per record (the counter of every keyed aggregation);
- map-state put + get;
- time-ordered range reads (the interval join's probe);
each through streamcore's typed handles, with one write batch per 1,024 records as the
runtime does. The floor is a bare rocksdict loop over pre-encoded bytes keys: ``get``
then ``WriteBatch.put``, one batch write per 1,024 records.

    python benchmarks/state_backends.py [--quick] [--json]
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import rocksdict
from common import best_of, parser, peak_rss_mb, report

from streamcore.serde import msgpack_dumps, msgpack_loads
from streamcore.state import KeyContext, MapStateDescriptor, StateBackendFactory, ValueStateDescriptor
from streamcore.time import ManualClock

BATCH = 1024


def make_keys(n, distinct, seed=7):
    rnd = random.Random(seed)
    return [f"user-{rnd.randrange(distinct)}" for _ in range(n)]


class Backend:
    def __init__(self, kind, tmp):
        self.factory = StateBackendFactory(kind, tmp / kind, ManualClock(0))
        self.factory.open(fresh=True)
        self.kc = KeyContext(128)
        self.backend = self.factory.create("bench", self.kc)

    def close(self):
        self.factory.close()


def rmw(b: Backend, keys):
    state = b.backend.get_state(ValueStateDescriptor("count"))
    kc = b.kc
    begin, end = b.backend.begin_batch, b.backend.end_batch
    value, update = state.value, state.update
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        kbs = kc.key_bytes_batch(chunk)
        begin()
        for k, kb in zip(chunk, kbs, strict=True):
            kc.key = k
            kc.key_bytes = kb
            v = value()
            update(1 if v is None else v + 1)
        end()
    return len(keys)


def map_put_get(b: Backend, keys):
    state = b.backend.get_state(MapStateDescriptor("m"))
    kc = b.kc
    put, get = state.put, state.get
    n = 0
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        kbs = kc.key_bytes_batch(chunk)
        b.backend.begin_batch()
        for i, (k, kb) in enumerate(zip(chunk, kbs, strict=True)):
            kc.key = k
            kc.key_bytes = kb
            put(i % 8, i)
            n += get((i + 3) % 8) is not None
        b.backend.end_batch()
    return n


def range_reads(b: Backend, keys, span):
    buf = b.backend.time_ordered_state("buf")
    kc = b.kc
    for start in range(0, len(keys), BATCH):
        chunk = keys[start : start + BATCH]
        b.backend.begin_batch()
        for i, k in enumerate(chunk):
            kc.set_current_key(k)
            buf.add(start + i, i)
        b.backend.end_batch()
    rnd = random.Random(1)
    probes = [(keys[rnd.randrange(len(keys))], rnd.randrange(len(keys))) for _ in range(len(keys) // 4)]

    def probe():
        found = 0
        for k, ts in probes:
            kc.set_current_key(k)
            found += len(buf.range(ts - span, ts))
        return found

    t, found = best_of(1, probe)
    return len(probes), found, t


def raw_floor(tmp: Path, keys):
    path = tmp / "raw"
    db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True))
    wo = rocksdict.WriteOptions()
    wo.disable_wal = True
    bkeys = [k.encode() for k in keys]
    get, write = db.get, db.write
    loads, dumps = msgpack_loads, msgpack_dumps

    def run():
        for start in range(0, len(bkeys), BATCH):
            wb = rocksdict.WriteBatch(raw_mode=True)
            put = wb.put
            for k in bkeys[start : start + BATCH]:
                raw = get(k)
                v = 0 if raw is None else loads(raw)
                put(k, dumps(v + 1))
            write(wb, wo)
        return len(bkeys)

    t, n = best_of(1, run)
    db.close()
    return t, n


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    n = 100_000 if args.quick else 1_000_000
    distinct = 10_000 if args.quick else 100_000
    keys = make_keys(n, distinct)
    tmp = Path(tempfile.mkdtemp(prefix="sc-bench-"))
    figures = {"records": n, "distinct_keys": distinct}
    try:
        t_raw, _ = raw_floor(tmp, keys)
        for kind in ("heap", "rocksdb"):
            b = Backend(kind, tmp)
            t, _ = best_of(1, lambda b=b: rmw(b, keys))
            figures[f"{kind}_rmw_rps"] = n / t
            t, _ = best_of(1, lambda b=b: map_put_get(b, keys[: n // 2]))
            figures[f"{kind}_map_put_get_rps"] = (n // 2) / t
            probes, found, t = range_reads(b, keys[: n // 4], 5_000)
            figures[f"{kind}_range_probes_per_s"] = probes / t
            figures[f"{kind}_range_entries_per_probe"] = found / max(probes, 1)
            b.close()
        figures["raw_rocksdb_floor_rps"] = n / t_raw
        figures["rocksdb_rmw_ratio"] = figures["rocksdb_rmw_rps"] / figures["raw_rocksdb_floor_rps"]
        figures["peak_rss_mb"] = peak_rss_mb()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("keyed state backends (ops/s; the floor is a bare rocksdict get + WriteBatch put loop)")
    report(figures, args.json)


if __name__ == "__main__":
    main()
