"""Engine throughput beside plain-Python floors measured in the same run.

1. Stateless map -> filter -> map over 2,000,000 records, against a list
   comprehension over the same functions.
2. Keyed event-time count, 10-second buckets, a timer per (key, bucket), 1,000,000
   records over 10,000 keys, against a hand-written dict + heap loop doing the same
   work (count per (key, bucket), emit when the watermark passes the bucket end).

    python benchmarks/throughput.py [--quick] [--json]
"""

from __future__ import annotations

import heapq

from common import CountSink, best_of, parser, peak_rss_mb, report

import streamcore as sc

BUCKET = 10_000
BOUND = 100


def m1(r):
    return r * 3


def keep(x):
    return x % 5 != 0


def m2(x):
    return x + 1


def stateless_engine(data):
    env = sc.StreamEnvironment()
    sink = CountSink()
    env.from_collection(data).map(m1).filter(keep).map(m2).sink_to(sink)
    env.execute("stateless")
    return sink.count


def stateless_floor(data):
    return len([m2(y) for y in map(m1, data) if keep(y)])


def key_of(r):
    return r[0]


def ts_of(r):
    return r[1]


class BucketCount(sc.KeyedProcessFunction):
    def open(self, ctx):
        self.counts = ctx.get_state(sc.MapStateDescriptor("counts"))
        self.timers = ctx.timer_service()

    def process_element(self, value, ctx):
        b = value[1] // BUCKET
        counts = self.counts
        c = counts.get(b)
        if c is None:
            counts.put(b, 1)
            self.timers.register_event_time_timer(b * BUCKET + BUCKET - 1)
        else:
            counts.put(b, c + 1)

    def on_timer(self, timestamp, ctx):
        b = timestamp // BUCKET
        c = self.counts.get(b)
        self.counts.remove(b)
        return [(ctx.get_current_key(), b, c)]


def keyed_engine(records, backend="heap", state_dir=None):
    env = sc.StreamEnvironment(state_backend=backend, state_dir=state_dir)
    sink = CountSink()
    wm = sc.WatermarkStrategy.for_bounded_out_of_orderness(BOUND)
    src = env.from_collection(records, timestamp=ts_of, watermarks=wm)
    src.key_by(key_of).process(BucketCount()).sink_to(sink)
    env.execute("keyed")
    return sink.count


def keyed_floor(records, batch=1024):
    counts = {}
    timers = []
    out = []
    max_ts = -(2**63)
    for start in range(0, len(records), batch):
        for r in records[start : start + batch]:
            k = key_of(r)
            ts = ts_of(r)
            if ts > max_ts:
                max_ts = ts
            kb = (k, ts // BUCKET)
            c = counts.get(kb)
            if c is None:
                counts[kb] = 1
                heapq.heappush(timers, (kb[1] * BUCKET + BUCKET - 1, k))
            else:
                counts[kb] = c + 1
        wm = max_ts - BOUND - 1
        while timers and timers[0][0] <= wm:
            t, k = heapq.heappop(timers)
            b = t // BUCKET
            out.append((k, b, counts.pop((k, b))))
    while timers:
        t, k = heapq.heappop(timers)
        b = t // BUCKET
        out.append((k, b, counts.pop((k, b))))
    return len(out)


def make_keyed(n, keys):
    # 10 records per ms, keys scattered, bounded disorder.
    return [((i * 7919) % keys, i // 10 + (i * 31) % BOUND) for i in range(n)]


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    n_stateless = 200_000 if args.quick else 2_000_000
    n_keyed = 100_000 if args.quick else 1_000_000
    keys = 10_000
    runs = 1 if args.quick else 3

    data = list(range(n_stateless))
    t_floor, n_floor = best_of(runs, lambda: stateless_floor(data))
    t_eng, n_eng = best_of(runs, lambda: stateless_engine(data))
    assert n_floor == n_eng, (n_floor, n_eng)

    records = make_keyed(n_keyed, keys)
    tk_floor, nk_floor = best_of(runs, lambda: keyed_floor(records))
    tk_eng, nk_eng = best_of(runs, lambda: keyed_engine(records))
    assert nk_floor == nk_eng, (nk_floor, nk_eng)

    figures = {
        "stateless_records": n_stateless,
        "stateless_rps": n_stateless / t_eng,
        "stateless_floor_rps": n_stateless / t_floor,
        "stateless_ratio": t_floor / t_eng,
        "keyed_records": n_keyed,
        "keyed_keys": keys,
        "keyed_rps": n_keyed / tk_eng,
        "keyed_floor_rps": n_keyed / tk_floor,
        "keyed_ratio": tk_floor / tk_eng,
        "keyed_outputs": nk_eng,
        "peak_rss_mb": peak_rss_mb(),
    }
    print("throughput (records/s; ratio = engine / plain-Python floor, same run)")
    report(figures, args.json)


if __name__ == "__main__":
    main()
