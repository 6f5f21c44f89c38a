"""What a user function's return value means: outputs are never split out of a tuple, dict, str or bytes."""

from __future__ import annotations

from typing import Any

import pytest

import streamcore as sc
from streamcore.errors import UserFunctionError

ONE_VALUES = [("a", 1), {"k": 1}, "word", b"bytes"]


class Returns(sc.KeyedProcessFunction):
    def __init__(self, value: Any) -> None:
        self.value = value

    def process_element(self, v: Any, ctx: Any) -> Any:
        return self.value


@pytest.mark.parametrize("value", ONE_VALUES, ids=lambda v: type(v).__name__)
def test_a_process_function_returning_one_value_is_a_clear_error(value: Any) -> None:
    env = sc.StreamEnvironment()
    env.from_collection([1]).key_by(lambda v: v).process(Returns(value)).uid("proc").sink_to(lambda v: None)
    with pytest.raises(UserFunctionError) as err:
        env.execute("one-value")
    text = str(err.value)
    assert f"returned a {type(value).__name__}" in text and "'proc'" in text and "Returns" in text
    assert "return a list of outputs" in text.lower() or "Return a list of outputs" in text


def test_lists_generators_and_none_are_outputs() -> None:
    class Gen(sc.KeyedProcessFunction):
        def process_element(self, v: Any, ctx: Any) -> Any:
            if v == 0:
                return None
            if v == 1:
                return [("list", v)]
            return (x for x in [("gen", v), ("gen2", v)])

    env = sc.StreamEnvironment()
    out = env.from_collection([0, 1, 2]).key_by(lambda v: v).process(Gen()).execute_and_collect()
    assert out == [("list", 1), ("gen", 2), ("gen2", 2)]


def test_on_timer_returning_a_tuple_is_a_clear_error() -> None:
    class Timer(sc.KeyedProcessFunction):
        def process_element(self, v: Any, ctx: Any) -> Any:
            ctx.timer_service().register_event_time_timer(ctx.timestamp() + 1)

        def on_timer(self, ts: int, ctx: Any) -> Any:
            return (ctx.get_current_key(), ts)

    env = sc.StreamEnvironment()
    (
        env.from_collection([1, 2], timestamp=lambda v: v)
        .key_by(lambda v: v)
        .process(Timer())
        .uid("timers")
        .sink_to(lambda v: None)
    )
    with pytest.raises(UserFunctionError, match=r"on_timer of .*'timers' returned a tuple"):
        env.execute("timer-tuple")


@pytest.mark.parametrize("value", ["split me", ("a", "b")], ids=["str", "tuple"])
def test_flat_map_never_splits_a_str_or_tuple(value: Any) -> None:
    env = sc.StreamEnvironment()
    env.from_collection([1]).flat_map(lambda v: value).sink_to(lambda v: None)
    with pytest.raises(UserFunctionError, match=f"flat_map function .* returned a {type(value).__name__}"):
        env.execute("flat")
    env2 = sc.StreamEnvironment()
    assert env2.from_collection(["a b"]).flat_map(lambda s: s.split()).execute_and_collect() == ["a", "b"]


def test_co_process_returning_a_str_is_a_clear_error() -> None:
    class Co(sc.CoProcessFunction):
        def process_element1(self, v: Any, ctx: Any) -> Any:
            return "left"

        def process_element2(self, v: Any, ctx: Any) -> Any:
            return ["right"]

    env = sc.StreamEnvironment()
    a, b = env.from_collection([1]), env.from_collection([2])
    a.connect(b).process(Co()).sink_to(lambda v: None)
    with pytest.raises(UserFunctionError, match=r"process_element1 of .* returned a str"):
        env.execute("co")


def _join(fn: Any) -> list[Any]:
    env = sc.StreamEnvironment()
    left = env.from_collection([("k", 10)], timestamp=lambda r: r[1])
    right = env.from_collection([("k", 8)], timestamp=lambda r: r[1])
    return (
        left.key_by(lambda r: r[0])
        .interval_join(right.key_by(lambda r: r[0]))
        .between(-5, 0)
        .process(fn)
        .execute_and_collect()
    )


@pytest.mark.parametrize("value", [*ONE_VALUES, 7], ids=lambda v: type(v).__name__)
def test_a_plain_join_callable_returns_one_output(value: Any) -> None:
    assert _join(lambda left, right, ctx: value) == [value]


def test_a_plain_join_callable_returns_outputs_as_a_list_or_generator() -> None:
    assert _join(lambda left, right, ctx: [left[1], right[1]]) == [10, 8]
    assert _join(lambda left, right, ctx: (x for x in [left[1], right[1]])) == [10, 8]
    assert _join(lambda left, right, ctx: left["user"] if False else None) == []


def test_a_join_function_class_returning_a_tuple_is_a_clear_error() -> None:
    class Pair(sc.ProcessJoinFunction):
        def process_element(self, left: Any, right: Any, ctx: Any) -> Any:
            return (left[1], right[1])

    with pytest.raises(UserFunctionError, match=r"Pair of operator .* returned a tuple"):
        _join(Pair())
