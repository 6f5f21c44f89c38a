"""Bad input gets a clear streamcore error naming the operator and the user function."""

from __future__ import annotations

import pytest

import streamcore as sc
from streamcore.errors import (
    KeyEncodingError,
    KeySelectorError,
    StateDescriptorConflictError,
    StateError,
    TimestampError,
    UserFunctionError,
)


class Noop(sc.KeyedProcessFunction):
    def process_element(self, value, ctx):
        return None


def broken_key(value):
    return value["missing"]


def test_key_selector_that_raises():
    env = sc.StreamEnvironment()
    s = env.from_collection([{"a": 1}]).key_by(broken_key).process(Noop()).uid("counter")
    with pytest.raises(KeySelectorError) as info:
        s.execute_and_collect()
    msg = str(info.value)
    assert "broken_key" in msg and "counter" in msg and "KeyError" in msg
    assert isinstance(info.value.__cause__, KeyError)


def to_text(value):
    return str(value)


def test_timestamp_that_is_not_an_int():
    env = sc.StreamEnvironment()
    s = env.from_collection([1, 2], timestamp=to_text, name="orders")
    with pytest.raises(TimestampError) as info:
        s.map(lambda x: x).execute_and_collect()
    assert "to_text" in str(info.value) and "orders" in str(info.value) and "int" in str(info.value)


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
@pytest.mark.parametrize("key", [[1, 2], {"a": 1}, object()])
def test_unsupported_key(backend, key, tmp_path):
    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp_path)

    def key_of(v):
        return key

    s = env.from_collection([1]).key_by(key_of).process(Noop()).uid("keyed")
    with pytest.raises(KeyEncodingError) as info:
        s.execute_and_collect()
    assert "keyed" in str(info.value) and "key_of" in str(info.value)


@pytest.mark.parametrize("backend", ["heap", "rocksdb"])
def test_state_registered_twice_with_different_types(backend, tmp_path):
    class Twice(sc.KeyedProcessFunction):
        def open(self, ctx):
            ctx.get_state(sc.ValueStateDescriptor("s"))
            ctx.get_state(sc.ListStateDescriptor("s"))

        def process_element(self, value, ctx):
            return None

    env = sc.StreamEnvironment(state_backend=backend, state_dir=tmp_path)
    s = env.from_collection([1]).key_by(lambda x: x).process(Twice()).uid("twice")
    with pytest.raises(StateDescriptorConflictError, match="twice"):
        s.execute_and_collect()


def exploding_map(x):
    return 1 / 0


def test_user_function_that_raises():
    env = sc.StreamEnvironment()
    with pytest.raises(UserFunctionError) as info:
        env.from_collection([1]).map(exploding_map).execute_and_collect()
    assert "exploding_map" in str(info.value) and "ZeroDivisionError" in str(info.value)


def test_keyed_state_on_a_non_keyed_stream():
    class Wrong(sc.ProcessFunction):
        def open(self, ctx):
            ctx.get_state(sc.ValueStateDescriptor("x"))

        def process_element(self, value, ctx):
            return None

    env = sc.StreamEnvironment()
    with pytest.raises(StateError, match="key_by"):
        env.from_collection([1]).process(Wrong()).execute_and_collect()


def test_process_function_of_the_wrong_kind():
    env = sc.StreamEnvironment()
    with pytest.raises(sc.errors.ConfigurationError):
        env.from_collection([1]).key_by(lambda x: x).process(lambda v, c: v)
    with pytest.raises(sc.errors.ConfigurationError):
        env.from_collection([1]).process(Noop())


@pytest.mark.parametrize(
    "kw",
    [{"batch_size": 0}, {"state_backend": "redis"}, {"state_backend": "rocksdb"}, {"max_parallelism": 0}],
)
def test_bad_environment_arguments(kw):
    with pytest.raises(sc.errors.ConfigurationError):
        sc.StreamEnvironment(**kw)
