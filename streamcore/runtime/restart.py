"""Restart strategies: how often, and after how long, a failed job restores and goes on.

A strategy is immutable configuration (``env.set_restart_strategy(fixed_delay(3, 1_000))``);
:class:`streamcore.runtime.run.JobRun` asks it, after each failure, whether to restart and
how long to wait first. A restart happens in the same process: the job is rebuilt from
its graph and restored from its latest completed checkpoint (or from what the first
attempt restored, when no checkpoint completed yet), as Flink's restart strategies do.

>>> s = fixed_delay(3, 500)
>>> [s.delay_ms(n) for n in (1, 2, 3)], s.allows(3), s.allows(4)
([500, 500, 500], True, False)
>>> e = exponential_delay(100, 1_000, multiplier=3.0)
>>> [e.delay_ms(n) for n in (1, 2, 3, 4)]
[100, 300, 900, 1000]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamcore.errors import ConfigurationError

__all__ = ["RestartStrategy", "exponential_delay", "fixed_delay", "no_restart"]


def _int(value: Any, name: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        msg = f"{name} must be an int >= {minimum}, got {value!r}"
        raise ConfigurationError(msg)
    return value


@dataclass(frozen=True)
class RestartStrategy:
    """When a failed job restarts (:func:`fixed_delay`, :func:`exponential_delay`, :func:`no_restart`).

    Attributes:
        kind: ``"none"``, ``"fixed-delay"`` or ``"exponential-delay"``.
        attempts: restarts allowed in one run (``None``: unlimited).
        initial_delay_ms: the wait before the first restart.
        max_delay_ms: the longest wait (exponential).
        multiplier: each further restart waits this many times longer (exponential).
        reset_after_ms: a job that ran this long without failing starts its backoff (and
            restart count) over (exponential; ``None``: never).
    """

    kind: str
    attempts: int | None = 0
    initial_delay_ms: int = 0
    max_delay_ms: int = 0
    multiplier: float = 1.0
    reset_after_ms: int | None = None

    def allows(self, restart_number: int) -> bool:
        """Whether restart number ``restart_number`` (1 for the first) may happen."""
        if self.kind == "none":
            return False
        return self.attempts is None or restart_number <= self.attempts

    def delay_ms(self, restart_number: int) -> int:
        """How long to wait before restart number ``restart_number`` (1 for the first)."""
        if self.kind == "exponential-delay":
            delay = self.initial_delay_ms * self.multiplier ** (restart_number - 1)
            return int(min(delay, self.max_delay_ms))
        return self.initial_delay_ms

    def describe(self) -> str:
        """One line for logs and the plan."""
        if self.kind == "none":
            return "no restarts"
        limit = "unlimited" if self.attempts is None else str(self.attempts)
        if self.kind == "fixed-delay":
            return f"fixed delay: {limit} restarts, {self.initial_delay_ms} ms apart"
        return (
            f"exponential delay: {limit} restarts, {self.initial_delay_ms} ms x{self.multiplier:g} "
            f"up to {self.max_delay_ms} ms"
        )


def no_restart() -> RestartStrategy:
    """A failure ends the job (the default)."""
    return RestartStrategy("none")


def fixed_delay(attempts: int, delay_ms: int) -> RestartStrategy:
    """Restart up to ``attempts`` times, waiting ``delay_ms`` before each (Flink's ``fixedDelayRestart``).

    Raises:
        ConfigurationError: ``attempts`` < 1 or ``delay_ms`` < 0, or not ints.
    """
    return RestartStrategy(
        "fixed-delay", _int(attempts, "fixed_delay attempts", 1), _int(delay_ms, "fixed_delay delay_ms", 0)
    )


def exponential_delay(
    initial_ms: int = 1_000,
    max_ms: int = 60_000,
    *,
    multiplier: float = 2.0,
    attempts: int | None = None,
    reset_after_ms: int | None = None,
) -> RestartStrategy:
    """Restart with waits growing by ``multiplier`` from ``initial_ms`` up to ``max_ms``.

    Args:
        attempts: restarts allowed (``None``: unlimited, as Flink's exponential strategy).
        reset_after_ms: after running this long without a failure the backoff starts over.

    Raises:
        ConfigurationError: a bad bound (``max_ms < initial_ms``, ``multiplier < 1``...).
    """
    initial = _int(initial_ms, "exponential_delay initial_ms", 0)
    top = _int(max_ms, "exponential_delay max_ms", initial)
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)) or multiplier < 1:
        msg = f"exponential_delay multiplier must be a number >= 1, got {multiplier!r}"
        raise ConfigurationError(msg)
    if attempts is not None:
        _int(attempts, "exponential_delay attempts", 1)
    if reset_after_ms is not None:
        _int(reset_after_ms, "exponential_delay reset_after_ms", 1)
    return RestartStrategy("exponential-delay", attempts, initial, top, float(multiplier), reset_after_ms)
