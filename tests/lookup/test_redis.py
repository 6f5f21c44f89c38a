"""Lookup joins against a real Redis server (redis-py asyncio): strings and hashes, oracle, failures."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamcore as sc
from streamcore.errors import LookupStoreError
from streamcore.testing.servers import RedisServer, free_port
from tests.lookup.support import Slowed, oracle, order, shop_row

pytestmark = pytest.mark.servers

SHOPS = 60


@pytest.fixture(scope="module")
def url(redis_server: RedisServer) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushdb()
        client.mset({f"shop:{i}": json.dumps(shop_row(i)) for i in range(SHOPS)})
        for i in range(SHOPS):
            client.hset(f"shop-h:{i}", mapping={k: str(v) for k, v in shop_row(i).items()})
        client.set("shop:bad", "{not json")
    finally:
        client.close()
    yield redis_server.url


@settings(max_examples=12)
@given(st.data())
def test_enriched_output_equals_a_dict_join(url: str, data: st.DataObject) -> None:
    keys = data.draw(st.lists(st.integers(0, SHOPS + 19), max_size=300), label="order keys")
    backend = data.draw(st.sampled_from(["heap", "rocksdb"]), label="backend")
    how = data.draw(st.sampled_from(["inner", "left"]), label="how")
    keyed = data.draw(st.booleans(), label="key_by_lookup_key")
    cache = data.draw(st.sampled_from([None, sc.LookupCache(max_rows=10)]), label="cache")
    orders = [order(i, k) for i, k in enumerate(keys)]
    lookup = Slowed(sc.RedisLookup(url, key_prefix="shop:"), seed=len(keys))
    state = tempfile.mkdtemp(prefix="redis-oracle-") if backend == "rocksdb" else None
    env = sc.StreamEnvironment(state_backend=backend, state_dir=state, batch_size=32)
    out = (
        env.from_collection(orders)
        .lookup_join(lookup, on=lambda o: o["shop_id"], how=how, cache=cache, key_by_lookup_key=keyed)
        .execute_and_collect()
    )
    expected = oracle(orders, {i: shop_row(i) for i in range(SHOPS)}, how)
    if keyed:
        assert sorted(out, key=lambda r: r["order_id"]) == expected
    else:
        assert out == expected
    assert all(len(f) == len(set(f)) for f in lookup.fetches)


def test_rows_stored_as_hashes(url: str) -> None:
    env = sc.StreamEnvironment()
    lookup = sc.RedisLookup(url, key_prefix="shop-h:", hash=True, decode=lambda h: {"city": h["city"]})
    out = env.from_collection([order(0, 3), order(1, 99)]).lookup_join(
        lookup, on=lambda o: o["shop_id"], how="left"
    )
    assert out.execute_and_collect() == [{**order(0, 3), "city": "city-3"}, order(1, 99)]


def test_a_server_that_is_down_at_start_is_named_without_its_password() -> None:
    port = free_port()
    env = sc.StreamEnvironment()
    lookup = sc.RedisLookup(f"redis://:pw@127.0.0.1:{port}/0")
    env.from_collection([order(0, 1)]).lookup_join(lookup, on=lambda o: o["shop_id"]).sink_to(lambda v: None)
    with pytest.raises(
        LookupStoreError, match=rf"RedisLookup\('redis://:\*\*\*@127.0.0.1:{port}/0'\): cannot connect"
    ):
        env.execute("down")


def test_a_value_of_the_wrong_shape_is_named(url: str) -> None:
    env = sc.StreamEnvironment()
    lookup = sc.RedisLookup(url, key_prefix="shop:")
    env.from_collection([{"shop_id": "bad"}]).lookup_join(lookup, on=lambda o: o["shop_id"]).sink_to(
        lambda v: None
    )
    with pytest.raises(
        LookupStoreError, match=r"the value of 'shop:bad' cannot be decoded \(JSONDecodeError"
    ):
        env.execute("shape")
