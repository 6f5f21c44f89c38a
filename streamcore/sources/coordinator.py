"""Watermark-aligned source rate coordination: pause the splits that run ahead.

When a job reads a backlog (a restart from an old checkpoint, a backfill), every
split reads as fast as it can. Splits whose event time advances quickly per record
(sparse streams, skewed partitions) push their watermark far past the others, and
every join or window downstream, which waits for the *minimum* watermark, buffers
the fast side until memory runs out. The coordinator has a global view of every
split's progress and stops polling the splits that are ahead.

Algorithm (per alignment group, every ``update_interval`` of the job clock):

1. Each split reports ``(split_id, clock_time, watermark, speed)``; ``speed`` is
   event-time progress per clock second while the split was being polled,
   smoothed with an exponentially weighted moving average.
2. Splits that are finished, idle, or have no watermark yet are excluded. With
   fewer than two splits left there is nothing to align.
3. Every split's watermark at the next report is predicted as
   ``watermark + speed * interval``. Predictive mode (the default) throttles when
   ``max(watermark) - min(watermark) > max_drift``, or when the predicted watermarks
   would be that far apart (the hard bound below keeps the current drift close to
   ``max_drift``, so the prediction is what usually engages it); the target is then
   ``min(predicted) + max_drift / 2``. Otherwise, and always in reactive mode, the
   target is Flink's bound ``min(watermark) + max_drift``. The predictive target
   never exceeds that bound, so a mispredicted speed (a watermark jump) cannot widen
   the drift.
4. The target is valid until ``now + interval``. A split whose watermark is at or
   past the target is paused, both at the decision and whenever it reaches the
   target before the next one (the check runs before each poll, in O(1)).
5. At the next report every split is re-evaluated: paused splits resume when the
   target rose past them, or when the group is no longer ahead.

Predictive mode holds the splits that run ahead about half a drift lower than
reactive mode, for a whole interval per pause, where reactive mode lets them run up to
the bound again after every report: less buffered state downstream and, when one batch
covers little event time compared with ``max_drift``, fewer pause/resume calls (Kafka
pauses partitions there).

Invariants:

* A fresh decision never pauses the slowest split (``target > min(watermark)``).
* No deadlock: when every remaining split of a group is paused (the slowest one
  finished, or reached the target early), the group is re-decided at once; if
  that still left nothing to poll, the slowest paused split is released.
* The drift across active splits stays within ``max_drift`` plus the event time
  one batch covers: a split is stopped before the first poll that starts at or
  past the target.
* A paused split is never idle (``SourceTask.update_watermark``), and resuming it
  restarts its idleness timer, so pausing never makes records late.
* Pausing never blocks a checkpoint: the executor serves checkpoints between
  batches whatever is paused, and the coordinator state is part of the image.

Only sources whose strategy has ``with_watermark_alignment(group, ...)`` are
coordinated; splits of different groups never hold each other back.

>>> from streamcore.sources.coordinator import SplitReport, decide
>>> reports = [SplitReport("a", 0, 0, 1_000.0), SplitReport("b", 0, 600_000, 1_000.0)]
>>> d = decide(reports, now=0, max_drift=300_000, interval=10_000, predictive=True)
>>> d.target_watermark, d.paused
(160000, ('b',))
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamcore.errors import ConfigurationError, RestoreError
from streamcore.sources.split_state import SplitState
from streamcore.time import MAX_TIMESTAMP, MIN_TIMESTAMP, Clock, WatermarkStrategy

__all__ = [
    "Decision",
    "RateCoordinationConfig",
    "SourceRateCoordinator",
    "SplitReport",
    "decide",
]

log = logging.getLogger("streamcore.coordinator")

_SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class RateCoordinationConfig:
    """How the job coordinates its sources (immutable; see :class:`SourceRateCoordinator`).

    Args:
        enabled: coordinate at all (``env.set_source_rate_coordination(enabled=False)``).
        predictive: Kuaishou's predictive target; ``False`` is Flink's reactive mode
            (pause a split once it is ``max_drift`` ahead of the slowest one).
        speed_smoothing: weight of the newest speed sample in the moving average,
            in ``(0, 1]`` (1: no smoothing).
        min_sample_fraction: a speed sample is taken only when the split was polled
            for at least this fraction of an interval (a split paused for most of it
            keeps its previous speed), in ``(0, 1]``.

    >>> RateCoordinationConfig(predictive=False).mode
    'reactive'
    """

    enabled: bool = True
    predictive: bool = True
    speed_smoothing: float = 0.5
    min_sample_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("enabled", "predictive"):
            if not isinstance(getattr(self, name), bool):
                msg = f"rate coordination {name} must be a bool, got {getattr(self, name)!r}"
                raise ConfigurationError(msg)
        for name in ("speed_smoothing", "min_sample_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                msg = f"rate coordination {name} must be a number in (0, 1], got {value!r}"
                raise ConfigurationError(msg)

    @property
    def mode(self) -> str:
        """``"predictive"`` or ``"reactive"``."""
        return "predictive" if self.predictive else "reactive"


class CoordinatedSource(Protocol):
    """What the coordinator needs of a running source: its uid, strategy and split states."""

    uid: str
    strategy: WatermarkStrategy | None
    splits: list[SplitState]


@dataclass(frozen=True, slots=True)
class SplitReport:
    """What one split tells the coordinator: its watermark and event-time speed at ``clock_time``.

    ``speed`` is in event-time milliseconds per clock second.
    """

    split_id: str
    clock_time: int
    watermark: int
    speed: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The coordinator's answer for one group until ``target_time``.

    ``target_watermark`` is ``None`` when there is nothing to align (fewer than two
    active splits). ``throttling`` says whether the drift exceeded ``max_drift`` (and,
    in predictive mode, the predictive target was used). ``paused`` lists the splits
    already at or past the target.
    """

    target_watermark: int | None
    target_time: int
    throttling: bool
    min_watermark: int | None
    max_watermark: int | None
    paused: tuple[str, ...]

    @property
    def drift(self) -> int:
        """``max - min`` watermark over the reported splits (0 without reports)."""
        if self.min_watermark is None or self.max_watermark is None:
            return 0
        return self.max_watermark - self.min_watermark


def decide(
    reports: Sequence[SplitReport], now: int, max_drift: int, interval: int, predictive: bool = True
) -> Decision:
    """The pure decision rule: the target watermark of a group of active splits.

    Args:
        reports: one report per active split (finished, idle and watermark-less
            splits already left out).
        now: the job clock at the decision; the target holds until ``now + interval``.
        max_drift: allowed event-time drift in ms.
        interval: the report interval in ms of the job clock.
        predictive: Kuaishou's predictive target (``True``) or Flink's reactive bound.

    >>> r = [SplitReport("a", 0, 1_000, 0.0), SplitReport("b", 0, 2_000, 0.0)]
    >>> d = decide(r, now=5, max_drift=500, interval=10, predictive=False)
    >>> d.target_watermark, d.target_time, d.throttling, d.drift, d.paused
    (1500, 15, True, 1000, ('b',))
    """
    target_time = now + interval
    if len(reports) < 2:
        wm = reports[0].watermark if reports else None
        return Decision(None, target_time, False, wm, wm, ())
    low = min(r.watermark for r in reports)
    high = max(r.watermark for r in reports)
    bound = low + max_drift
    throttling = high - low > max_drift
    target = bound
    if predictive:
        seconds = interval / 1000
        predicted = [r.watermark + int(max(0.0, r.speed) * seconds) for r in reports]
        # The hard bound keeps the drift itself near max_drift, so the prediction is what
        # usually engages the throttle: the drift the next report would see if no split paused.
        throttling = throttling or max(predicted) - min(predicted) > max_drift
        if throttling:
            target = min(min(predicted) + max(1, max_drift // 2), bound)
    paused = tuple(r.split_id for r in reports if r.watermark >= target)
    return Decision(target, target_time, throttling, low, high, paused)


class _Split:
    """The coordinator's view of one aligned split: its group, speed, and the speed baseline."""

    __slots__ = (
        "base_paused",
        "base_time",
        "base_wm",
        "finished",
        "group",
        "has_speed",
        "key",
        "speed",
        "state",
    )

    def __init__(self, key: str, state: SplitState, group: _Group, now: int) -> None:
        self.key = key
        self.state = state
        self.group = group
        self.finished = state.finished
        self.speed = 0.0
        self.has_speed = False
        # The speed baseline: clock time, watermark and paused total at the last sample.
        self.base_time = now
        self.base_wm = state.watermark
        self.base_paused = 0

    @property
    def paused(self) -> bool:
        return self.state.paused

    def watermark(self) -> int:
        return self.state.watermark


class _Group:
    """One alignment group: its members and the decision in force."""

    __slots__ = (
        "decisions",
        "drift",
        "interval",
        "max_drift",
        "members",
        "name",
        "next_report",
        "paused",
        "peak_drift",
        "running",
        "target",
        "target_time",
        "throttling",
        "warm_until",
    )

    def __init__(self, name: str, max_drift: int, interval: int, now: int) -> None:
        self.name = name
        self.max_drift = max_drift
        self.interval = interval
        self.members: list[_Split] = []
        self.target: int | None = None
        self.target_time = now
        self.next_report = now + interval
        # Until every split has a watermark (or one interval passed) the group is decided every tick.
        self.warm_until = now + interval
        self.running = 0
        self.paused = 0
        self.decisions = 0
        self.drift = 0
        self.peak_drift = 0
        self.throttling = False


class SourceRateCoordinator:
    """Pauses source splits that run ahead of their alignment group (see the module docstring).

    The executor calls :meth:`attach` once the sources are open, :meth:`may_poll`
    before every poll, :meth:`tick` between batches, :meth:`on_idle_round` after a
    round that read nothing; :meth:`snapshot` goes into checkpoints and
    :meth:`restore` takes it back (before or after :meth:`attach`).
    """

    def __init__(self, config: RateCoordinationConfig | None = None) -> None:
        config = config if config is not None else RateCoordinationConfig()
        if not isinstance(config, RateCoordinationConfig):
            msg = f"SourceRateCoordinator takes a RateCoordinationConfig, got {type(config).__name__}"
            raise ConfigurationError(msg)
        self.config = config
        self._clock: Clock | None = None
        self._groups: dict[str, _Group] = {}
        self._by_state: dict[int, _Split] = {}  # id(SplitState) -> its coordinator view
        self._splits: list[_Split] = []
        self._last: _Split | None = None
        self._next_due = 0
        self._pending_restore: dict[str, Any] | None = None
        self.pauses = 0
        self.resumes = 0
        self.forced_releases = 0
        self.decisions = 0

    # -- wiring ------------------------------------------------------------------------
    def attach(self, sources: Iterable[CoordinatedSource], clock: Clock) -> None:
        """Collect the aligned splits of ``sources`` (opened sources) by group.

        Raises:
            ConfigurationError: two sources of one group disagree on ``max_drift`` or
                ``update_interval``.
        """
        self._clock = clock
        now = clock.now_ms()
        owner: dict[str, str] = {}
        for task in sources:
            strategy = task.strategy
            alignment = strategy.alignment if strategy is not None else None
            if alignment is None:
                continue
            group = self._groups.get(alignment.group)
            if group is None:
                group = _Group(alignment.group, alignment.max_drift, alignment.update_interval, now)
                self._groups[alignment.group] = group
                owner[alignment.group] = task.uid
            elif (group.max_drift, group.interval) != (alignment.max_drift, alignment.update_interval):
                msg = (
                    f"sources {owner[alignment.group]!r} and {task.uid!r} share watermark alignment group "
                    f"{alignment.group!r} with different settings (max_drift {group.max_drift} vs "
                    f"{alignment.max_drift} ms, update_interval {group.interval} vs "
                    f"{alignment.update_interval} ms); give every source of a group the same alignment"
                )
                raise ConfigurationError(msg)
            self._join_group(task, task.splits, group, now)
        self._next_due = now
        if self._groups:
            log.info(
                "rate coordination attached mode=%s groups=%s splits=%d",
                self.config.mode,
                sorted(self._groups),
                len(self._splits),
                extra={"mode": self.config.mode, "groups": sorted(self._groups)},
            )
        if self._pending_restore is not None:
            image, self._pending_restore = self._pending_restore, None
            self._apply_restore(image, now)

    # -- the hot path ------------------------------------------------------------------
    def add_splits(self, task: CoordinatedSource, new: list[SplitState], now: int) -> None:
        """``new`` splits of ``task`` were discovered while running: coordinate them with their group."""
        strategy = task.strategy
        alignment = strategy.alignment if strategy is not None else None
        if alignment is None or alignment.group not in self._groups:
            return
        self._join_group(task, new, self._groups[alignment.group], now)
        log.info(
            "rate coordination: %d new splits of %s in group %s",
            len(new),
            task.uid,
            alignment.group,
            extra={"group": alignment.group},
        )

    def _join_group(self, task: CoordinatedSource, states: list[SplitState], group: _Group, now: int) -> None:
        """Coordinate ``states`` (splits of ``task``) as members of ``group``."""
        for state in states:
            split = _Split(f"{task.uid}/{state.split_id}", state, group, now)
            group.members.append(split)
            self._splits.append(split)
            self._by_state[id(state)] = split
            if not split.finished:
                group.running += 1

    def may_poll(self, state: SplitState) -> bool:
        """Whether the split ``state`` may be polled now (O(1); called per batch).

        A split that reached its group's target is paused here, before the poll.
        """
        split = self._by_state.get(id(state))
        if split is None:
            return True
        if state.paused:
            return False
        target = split.group.target
        if target is not None and state.watermark >= target:
            self._pause_at_target(split)
            if split.paused:
                return False
        self._last = split
        return True

    def tick(self, now: int) -> None:
        """Between batches: notice a split that just finished; report and decide once per interval."""
        last = self._last
        if last is not None:
            self._last = None
            if not last.finished and last.state.finished:
                self._mark_finished(last)
                if last.group.paused:
                    # The finished split may have been the one holding the others back.
                    self._decide(last.group, now, "split finished")
        if now < self._next_due:
            return
        for group in self._groups.values():
            if now >= group.next_report:
                self._decide(group, now, "interval")
            elif now < group.warm_until:
                self._decide(group, now, "warm-up", sample=False)
        self._schedule(now)

    def on_idle_round(self) -> None:
        """A whole round read nothing: re-decide any group with paused splits so none stays stuck."""
        if self._clock is None:
            return
        now = self._clock.now_ms()
        for group in self._groups.values():
            if group.paused:
                self._decide(group, now, "idle round")
        self._schedule(now)

    # -- decisions ---------------------------------------------------------------------
    def _schedule(self, now: int) -> None:
        if any(now < g.warm_until for g in self._groups.values()):
            self._next_due = now
        else:
            self._next_due = min((g.next_report for g in self._groups.values()), default=MAX_TIMESTAMP)

    def _mark_finished(self, split: _Split) -> None:
        split.finished = True
        if not split.paused:
            split.group.running -= 1

    def _pause_at_target(self, split: _Split) -> None:
        assert self._clock is not None
        now = self._clock.now_ms()
        group = split.group
        target = group.target
        assert target is not None
        # Rare path (once per split and decision), so a scan of the group is fine.
        behind = any(
            s is not split and not s.paused and not s.finished and not s.state.idle and s.watermark() < target
            for s in group.members
        )
        if behind:
            self._pause(split, now, "reached target")
        else:
            # No split with data is behind the target any more: the decision is stale (the
            # slowest split finished, or reached the target before the interval ended).
            # Decide again now; the new target lets the slowest split run.
            self._decide(group, now, "target reached by every running split")

    def _sample_speed(self, split: _Split, wm: int, now: int, group: _Group) -> None:
        elapsed = now - split.base_time
        if elapsed <= 0:
            return
        paused_total = split.state.paused_total(now)
        running = elapsed - (paused_total - split.base_paused)
        if running < max(1, group.interval * self.config.min_sample_fraction):
            return
        if wm > MIN_TIMESTAMP and split.base_wm > MIN_TIMESTAMP:
            sample = max(0, wm - split.base_wm) * 1000 / running
            if split.has_speed:
                alpha = self.config.speed_smoothing
                split.speed = alpha * sample + (1 - alpha) * split.speed
            else:
                split.speed = sample
                split.has_speed = True
        split.base_time = now
        split.base_wm = wm
        split.base_paused = paused_total

    def _decide(self, group: _Group, now: int, reason: str, sample: bool = True) -> Decision:
        reports: list[SplitReport] = []
        warming = False
        for split in group.members:
            if not split.finished and split.state.finished:
                self._mark_finished(split)
            wm = split.watermark()
            if sample:
                self._sample_speed(split, wm, now, group)
            elif split.base_wm == MIN_TIMESTAMP:
                split.base_time, split.base_wm = now, wm
            if split.finished:
                continue
            if wm == MIN_TIMESTAMP:
                warming = True
                continue
            if not split.paused and split.state.idle:
                continue
            reports.append(SplitReport(split.key, now, wm, split.speed))
        if not warming:
            group.warm_until = now
        decision = decide(reports, now, group.max_drift, group.interval, self.config.predictive)
        if decision.throttling != group.throttling:
            log.info(
                "rate coordination %s group=%s drift_ms=%d max_drift_ms=%d target=%s",
                "engaged" if decision.throttling else "released",
                group.name,
                decision.drift,
                group.max_drift,
                decision.target_watermark,
                extra={"group": group.name, "drift": decision.drift, "target": decision.target_watermark},
            )
        group.throttling = decision.throttling
        group.target = decision.target_watermark
        group.target_time = decision.target_time
        if reason != "warm-up":
            group.next_report = now + group.interval
        group.decisions += 1
        group.drift = decision.drift
        group.peak_drift = max(group.peak_drift, decision.drift)
        self.decisions += 1
        if log.isEnabledFor(logging.DEBUG):
            for r in reports:
                log.debug(
                    "split report group=%s split=%s watermark=%d speed=%.1f",
                    group.name,
                    r.split_id,
                    r.watermark,
                    r.speed,
                    extra={
                        "group": group.name,
                        "split": r.split_id,
                        "watermark": r.watermark,
                        "speed": r.speed,
                    },
                )
            log.debug(
                "decision group=%s reason=%s target=%s until=%d drift_ms=%d pause=%s",
                group.name,
                reason,
                decision.target_watermark,
                decision.target_time,
                decision.drift,
                list(decision.paused),
                extra={"group": group.name, "target": decision.target_watermark, "drift": decision.drift},
            )
        pause = set(decision.paused)
        for split in group.members:
            if split.paused and split.key not in pause:
                self._resume(split, now, reason)
        for split in group.members:
            if not split.paused and split.key in pause:
                self._pause(split, now, reason)
        if group.running <= 0 and group.paused:
            self._release_slowest(group, now)
        return decision

    def _release_slowest(self, group: _Group, now: int) -> None:
        slowest = min((s for s in group.members if s.paused), key=lambda s: s.watermark())
        self.forced_releases += 1
        log.info(
            "rate coordination released the slowest paused split group=%s split=%s watermark=%d",
            group.name,
            slowest.key,
            slowest.watermark(),
            extra={"group": group.name, "split": slowest.key},
        )
        self._resume(slowest, now, "no split left to poll")

    def _pause(self, split: _Split, now: int, reason: str) -> None:
        split.state.pause(now)
        group = split.group
        group.paused += 1
        group.running -= 1
        self.pauses += 1
        log.debug(
            "pause split=%s watermark=%d target=%s reason=%s",
            split.key,
            split.watermark(),
            group.target,
            reason,
            extra={"group": group.name, "split": split.key},
        )

    def _resume(self, split: _Split, now: int, reason: str) -> None:
        split.state.resume(now)  # also restarts the split's idleness timer
        group = split.group
        group.paused -= 1
        group.running += 1
        self.resumes += 1
        log.debug(
            "resume split=%s watermark=%d target=%s reason=%s",
            split.key,
            split.watermark(),
            group.target,
            reason,
            extra={"group": group.name, "split": split.key},
        )

    # -- checkpoints -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Speeds, pauses and targets (msgpack-able); times are stored relative to now."""
        now = self._clock.now_ms() if self._clock is not None else 0
        return {
            "version": _SNAPSHOT_VERSION,
            "mode": self.config.mode,
            "groups": {
                g.name: {
                    "target": g.target,
                    "target_remaining_ms": max(0, g.target_time - now),
                    "throttling": g.throttling,
                }
                for g in self._groups.values()
            },
            "splits": {
                s.key: {"speed": s.speed, "has_speed": s.has_speed, "paused": s.paused} for s in self._splits
            },
        }

    def restore(self, image: dict[str, Any] | None) -> None:
        """Take back what :meth:`snapshot` returned; before :meth:`attach` it is applied there.

        Splits and groups the job no longer has are ignored: coordination is advisory
        and never fails a restore.

        Raises:
            RestoreError: ``image`` is not a coordinator snapshot.
        """
        if image is None:
            return
        if not isinstance(image, dict) or image.get("version") != _SNAPSHOT_VERSION:
            msg = (
                f"the checkpoint's rate coordinator state is not a version-{_SNAPSHOT_VERSION} "
                f"snapshot ({type(image).__name__}); it was written by another streamcore version"
            )
            raise RestoreError(msg)
        if self._clock is None:
            self._pending_restore = image
            return
        self._apply_restore(image, self._clock.now_ms())

    def _apply_restore(self, image: dict[str, Any], now: int) -> None:
        splits = image.get("splits", {})
        for split in self._splits:
            st = splits.get(split.key)
            if st is None:
                continue
            split.speed = float(st["speed"])
            split.has_speed = bool(st["has_speed"])
        for name, st in image.get("groups", {}).items():
            group = self._groups.get(name)
            if group is None:
                log.info("rate coordination: checkpointed group %r no longer exists; ignored", name)
                continue
            group.target = st["target"]
            group.throttling = bool(st["throttling"])
            group.target_time = now + int(st["target_remaining_ms"])
            group.next_report = group.target_time
            for split in group.members:
                st_split = splits.get(split.key)
                if st_split and st_split["paused"] and not split.paused and not split.finished:
                    self._pause(split, now, "restored")
            if group.running <= 0 and group.paused:
                self._release_slowest(group, now)
        self._schedule(now)

    # -- observability -------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Per group: target, drift, paused splits; per split: watermark, speed, paused time."""
        now = self._clock.now_ms() if self._clock is not None else 0
        return {
            "mode": self.config.mode,
            "decisions": self.decisions,
            "pauses": self.pauses,
            "resumes": self.resumes,
            "forced_releases": self.forced_releases,
            "groups": {
                g.name: {
                    "target_watermark": g.target,
                    "target_time": g.target_time,
                    "throttling": g.throttling,
                    "drift": g.drift,
                    "peak_drift": g.peak_drift,
                    "max_drift": g.max_drift,
                    "update_interval": g.interval,
                    "splits": len(g.members),
                    "paused_splits": g.paused,
                    "decisions": g.decisions,
                }
                for g in self._groups.values()
            },
            "splits": {
                s.key: {
                    "group": s.group.name,
                    "watermark": s.watermark(),
                    "speed": s.speed,
                    "paused": s.paused,
                    "paused_ms": s.state.paused_total(now),
                    "finished": s.finished,
                }
                for s in self._splits
            },
        }
