"""Order-preserving key encoding: byte order equals value order; round trips; prefix freedom."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamcore.errors import KeyEncodingError, SerializationError
from streamcore.serde import (
    MAX_INT64,
    MIN_INT64,
    decode_key,
    decode_ts,
    encode_key,
    encode_ts,
    msgpack_dumps,
    msgpack_loads,
)

ints = st.integers(MIN_INT64, MAX_INT64)
floats = st.floats(allow_nan=False, width=64).filter(lambda f: not f.is_integer())
texts = st.text()
blobs = st.binary()
scalars = st.one_of(ints, texts, blobs, st.none())
tuples = st.tuples(scalars, scalars) | st.tuples(scalars) | st.tuples(texts, ints, blobs)


def _sign(x):
    return (x > 0) - (x < 0)


@given(ints, ints)
def test_int_order(a, b):
    assert _sign((a > b) - (a < b)) == _sign(
        (encode_key(a) > encode_key(b)) - (encode_key(a) < encode_key(b))
    )


@given(texts, texts)
def test_str_order(a, b):
    assert (a < b) == (encode_key(a) < encode_key(b))
    assert (a == b) == (encode_key(a) == encode_key(b))


@given(blobs, blobs)
def test_bytes_order(a, b):
    assert (a < b) == (encode_key(a) < encode_key(b))


@given(st.floats(allow_nan=False, width=64), st.floats(allow_nan=False, width=64))
def test_float_order(a, b):
    # Integral floats encode as ints (2.0 == 2); the rest share the float tag and keep their order.
    if not a.is_integer() and not b.is_integer():
        assert (a < b) == (encode_key(a) < encode_key(b))


@given(st.tuples(texts, ints), st.tuples(texts, ints))
def test_tuple_order(a, b):
    assert (a < b) == (encode_key(a) < encode_key(b))


@given(st.lists(texts, max_size=3).map(tuple), st.lists(texts, max_size=3).map(tuple))
def test_variable_length_tuple_order(a, b):
    assert (a < b) == (encode_key(a) < encode_key(b))


@given(st.one_of(scalars, tuples, floats))
def test_round_trip(key):
    enc = encode_key(key)
    decoded, end = decode_key(enc)
    assert decoded == key
    assert end == len(enc)


@given(st.one_of(scalars, tuples), st.one_of(scalars, tuples))
def test_no_encoding_is_a_prefix_of_another(a, b):
    ea, eb = encode_key(a), encode_key(b)
    if ea != eb:
        assert not eb.startswith(ea)
        assert not ea.startswith(eb)


@given(ints.filter(lambda x: x < MAX_INT64 - 1), ints)
def test_timestamp_encoding_orders_negative_before_positive(a, b):
    assert (a < b) == (encode_ts(a) < encode_ts(b))
    assert decode_ts(encode_ts(a)) == a
    assert len(encode_ts(a)) == 8


def test_equal_python_values_encode_equally():
    assert encode_key(True) == encode_key(1)
    assert encode_key(2.0) == encode_key(2)


@pytest.mark.parametrize("bad", [[1, 2], {"a": 1}, {1}, float("nan"), object(), 2**70])
def test_unsupported_keys_raise_key_encoding_error(bad):
    with pytest.raises(KeyEncodingError):
        encode_key(bad)


@given(
    st.recursive(
        scalars | st.floats(allow_nan=False) | st.booleans(),
        lambda c: st.lists(c, max_size=3) | st.tuples(c, c) | st.dictionaries(texts, c, max_size=3),
        max_leaves=8,
    )
)
def test_msgpack_round_trip_keeps_tuples(value):
    assert msgpack_loads(msgpack_dumps(value)) == value
    if isinstance(value, tuple):
        assert isinstance(msgpack_loads(msgpack_dumps(value)), tuple)


def test_msgpack_error_names_the_type():
    with pytest.raises(SerializationError, match="object"):
        msgpack_dumps({"a": object()})
