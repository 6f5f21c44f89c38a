"""Restart strategies: a failed job restores from its latest checkpoint in-process and goes on."""

from __future__ import annotations

import logging

import pytest

import streamcore as sc
from streamcore.errors import ConfigurationError, UserFunctionError
from streamcore.runtime.restart import RestartStrategy


class FailAt:
    """A map that raises the first ``times`` times it sees ``value`` (across restarts)."""

    def __init__(self, value: int, times: int = 1) -> None:
        self.value = value
        self.left = times

    def __call__(self, x: int) -> int:
        if x == self.value and self.left > 0:
            self.left -= 1
            raise RuntimeError(f"injected failure at {x}")
        return x


def counting_job(
    tmp_path, fail: FailAt, strategy: RestartStrategy, n: int = 5_000
) -> tuple[sc.StreamEnvironment, list]:
    env = sc.StreamEnvironment(batch_size=100)
    env.enable_checkpointing(tmp_path / "ck", every_records=1_000, asynchronous=False)
    env.set_restart_strategy(strategy)
    out: list = []
    sink = sc.FileSink(tmp_path / "out")
    env.from_collection(range(n), name="numbers").map(fail).sink_to(sink)
    return env, out


def test_fixed_delay_restores_from_the_latest_checkpoint_and_finishes(tmp_path, caplog):
    env, _ = counting_job(tmp_path, FailAt(3_456), sc.fixed_delay(3, 0))
    with caplog.at_level(logging.INFO, logger="streamcore"):
        result = env.execute("restarting")
    assert result.restarts == 1 and not result.stopped
    # The exactly-once FileSink saw every number exactly once although the job failed once.
    lines = sorted(
        int(x)
        for f in (tmp_path / "out").iterdir()
        if not f.name.startswith(".")
        for x in f.read_text().split()
    )
    assert lines == list(range(5_000))
    messages = [r.getMessage() for r in caplog.records]
    assert any("restart 1 in 0 ms from the latest checkpoint" in m for m in messages)
    assert any("restored from checkpoint" in m for m in messages)


def test_restarts_run_out(tmp_path):
    env, _ = counting_job(tmp_path, FailAt(2_500, times=5), sc.fixed_delay(2, 0))
    with pytest.raises(UserFunctionError, match="injected failure at 2500"):
        env.execute("exhausted")


def test_exponential_delay_restarts_with_growing_waits(tmp_path, caplog):
    env, _ = counting_job(tmp_path, FailAt(1_500, times=2), sc.exponential_delay(1, 4, multiplier=2.0))
    with caplog.at_level(logging.INFO, logger="streamcore.runtime"):
        result = env.execute("backoff")
    assert result.restarts == 2
    waits = [m for m in (r.getMessage() for r in caplog.records) if "restart " in m and " in " in m]
    assert ["restart 1 in 1 ms" in waits[0], "restart 2 in 2 ms" in waits[1]] == [True, True]


def test_without_a_checkpoint_a_restart_starts_over(tmp_path):
    env = sc.StreamEnvironment(batch_size=10)
    env.set_restart_strategy(sc.fixed_delay(1, 0))
    fail = FailAt(42)
    env.from_collection(range(100)).map(fail).sink_to(lambda v: None)
    result = env.execute("fresh-restart")
    assert result.restarts == 1 and result.records_read == 100


def test_configuration_errors_are_never_retried(tmp_path):
    env = sc.StreamEnvironment()
    env.set_restart_strategy(sc.fixed_delay(5, 0))
    env.from_collection([1]).sink_to(lambda v: None)
    with pytest.raises(ConfigurationError, match="enable_checkpointing"):
        env.execute("bad", restore_from="latest")


def test_restart_counts_in_the_handle_and_no_restart_is_the_default(tmp_path):
    env, _ = counting_job(tmp_path, FailAt(10), sc.no_restart())
    with pytest.raises(UserFunctionError):
        env.execute("no-restart")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: sc.fixed_delay(0, 10), "attempts must be an int >= 1"),
        (lambda: sc.fixed_delay(1, -1), "delay_ms must be an int >= 0"),
        (lambda: sc.exponential_delay(100, 10), "max_ms must be an int >= 100"),
        (lambda: sc.exponential_delay(multiplier=0.5), "multiplier must be a number >= 1"),
        (
            lambda: sc.StreamEnvironment().set_restart_strategy(3),
            "set_restart_strategy\\(\\) takes fixed_delay",
        ),
    ],
)
def test_bad_restart_strategies(make, match):
    with pytest.raises(ConfigurationError, match=match):
        make()
