"""The crash-test job and its driver: kill -9 a real process at random moments, restart it, compare.

Run as a script, this module runs one job: a generator of ``records`` integers keyed by
``i % keys``; a keyed process function keeps a per-key count (value state) and the last
few values (list state) and emits ``"key,i,count"``; a :class:`FileSink` writes the lines
exactly once; checkpoints every ``every`` records; ``restore_from="latest"``. The output
of an uninterrupted run is known in closed form: the ``n``-th element of key ``k`` has
count ``n``.

:func:`run_crash_test` is the driver (the benchmark calls it too): it starts the job,
kills it with SIGKILL after a random delay, or, every third kill, as soon as a checkpoint
is being written (a ``chk-<id>`` directory without metadata appears), restarts it, and
after ``kills`` kills lets it finish; then it counts lost and duplicated lines.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
JOB_NAME = "crash-test"


def expected_lines(records: int, keys: int) -> list[str]:
    """The output of an uninterrupted run."""
    return [f"{i % keys},{i},{i // keys + 1}" for i in range(records)]


def run_job(args: argparse.Namespace) -> None:
    """Build and run the job (in this process)."""
    import streamcore as sc
    from streamcore.checkpoint import snapshot as snapshot_module
    from streamcore.sinks.file import FileSink

    if args.write_delay_ms:
        # Widen the window in which a kill lands while checkpoint files are being written.
        write = snapshot_module.write_durable
        delay = args.write_delay_ms / 1000

        def slow_write(path: Path, data: bytes) -> None:
            time.sleep(delay)
            write(path, data)

        snapshot_module.write_durable = slow_write  # type: ignore[assignment]

    keys = args.keys
    pause_every = args.pause_every

    class CountAndRemember(sc.KeyedProcessFunction):
        def open(self, ctx: Any) -> None:
            self.count = ctx.get_state(sc.ValueStateDescriptor("count"))
            self.recent = ctx.get_state(sc.ListStateDescriptor("recent"))

        def process_element(self, value: int, ctx: Any) -> Any:
            if pause_every and value % pause_every == 0:
                time.sleep(0.001)
            n = (self.count.value() or 0) + 1
            self.count.update(n)
            recent = self.recent.get()
            if len(recent) >= 3:
                self.recent.update([*recent[1:], value])
            else:
                self.recent.add(value)
            return [f"{value % keys},{value},{n}"]

    env = sc.StreamEnvironment(
        state_backend=args.backend,
        state_dir=args.state,
        batch_size=args.batch_size,
    )
    env.enable_checkpointing(args.checkpoints, every_records=args.every, retain=2)
    (
        env.from_generator(lambda split, offset: offset, count=args.records, name="numbers")
        .key_by(lambda v: v % keys)
        .process(CountAndRemember())
        .uid("count")
        .sink_to(FileSink(args.out))
        .uid("files")
    )
    print("RUNNING", flush=True)
    from streamcore.checkpoint import RestoreFrom

    env.execute(JOB_NAME, restore_from=RestoreFrom("latest", fall_back=args.fall_back))
    print("DONE", flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backend", default="rocksdb", choices=["heap", "rocksdb"])
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoints", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--keys", type=int, default=97)
    p.add_argument("--every", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--pause-every", type=int, default=10, help="sleep 1 ms every N records (0: never)")
    p.add_argument("--write-delay-ms", type=float, default=2.0)
    p.add_argument("--fall-back", action="store_true", help="restore past a corrupt newest checkpoint")
    return p


def read_output(out: Path) -> list[str]:
    """Every committed line (``part-*`` files only)."""
    lines: list[str] = []
    for p in sorted(out.glob("part-*")):
        lines.extend(p.read_text(encoding="utf-8").splitlines())
    return lines


def _incomplete_checkpoint(chk: Path) -> bool:
    try:
        return any(d.name.startswith("chk-") and not (d / "_metadata").exists() for d in chk.iterdir())
    except OSError:
        return False


def run_crash_test(
    workdir: str | os.PathLike[str],
    *,
    kills: int = 20,
    backend: str = "rocksdb",
    records: int | None = None,
    keys: int = 97,
    every: int = 400,
    max_delay_s: float = 0.2,
    pause_every: int = 10,
    seed: int = 0,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Kill the crash job ``kills`` times, let it finish, and count lost and duplicated lines.

    The job sleeps 1 ms every ``pause_every`` records, so it cannot finish before the kills
    are done however fast the machine: ``records`` defaults to ``2000 * kills`` (at least
    6000), at least twice the progress the kills' random delays allow.

    Returns:
        ``kills``, ``kills_during_checkpoint``, ``finished_early`` (runs that ended before
        their kill), ``lost``, ``duplicated``, ``lines``, ``seconds``.
    """
    rng = random.Random(seed)
    if records is None:
        records = max(6_000, 2_000 * kills)
    work = Path(workdir)
    out, chk, state = work / "out", work / "checkpoints", work / "state"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--backend",
        backend,
        "--out",
        str(out),
        "--checkpoints",
        str(chk),
        "--state",
        str(state),
        "--records",
        str(records),
        "--keys",
        str(keys),
        "--every",
        str(every),
        "--pause-every",
        str(pause_every),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    done_kills = during_checkpoint = finished_early = 0
    deadline = started + timeout_s
    while done_kills < kills:
        if time.perf_counter() > deadline:
            msg = f"crash test did not reach {kills} kills within {timeout_s} s"
            raise TimeoutError(msg)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "RUNNING":
            proc.wait()
            msg = f"crash job failed to start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
            raise RuntimeError(msg)
        targeted = done_kills % 3 == 2
        if targeted:
            # Kill while a checkpoint is being written.
            limit = time.perf_counter() + 2 * max_delay_s + 1.0
            while proc.poll() is None and time.perf_counter() < limit and not _incomplete_checkpoint(chk):
                time.sleep(0.0002)
        else:
            time.sleep(rng.uniform(0, max_delay_s))
        if proc.poll() is not None:
            _check_exit(proc)
            finished_early += 1
            # The job completed: start over from scratch would change nothing; count no kill.
            break
        if _incomplete_checkpoint(chk):
            during_checkpoint += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
        done_kills += 1
    # Let it finish.
    final = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False)
    if final.returncode != 0 or "DONE" not in final.stdout:
        msg = f"the final run failed (exit {final.returncode}): {final.stderr[-3000:]}"
        raise RuntimeError(msg)
    lines = read_output(out)
    counts = collections.Counter(lines)
    expected = set(expected_lines(records, keys))
    lost = len(expected - counts.keys())
    duplicated = sum(c - 1 for c in counts.values() if c > 1) + sum(1 for k in counts if k not in expected)
    leftovers = [p.name for p in out.glob(".*")]
    from streamcore.checkpoint.storage import CheckpointStorage, read_metadata

    storage = CheckpointStorage(chk)
    retained = storage.list()
    referenced = {name for c in retained if c.complete for name in read_metadata(c.path)["shared"]}
    return {
        "kills": done_kills,
        "kills_during_checkpoint": during_checkpoint,
        "finished_early": finished_early,
        "lost": lost,
        "duplicated": duplicated,
        "lines": len(lines),
        "records": records,
        "leftover_files": leftovers,
        "incomplete_checkpoints": [c.path.name for c in retained if not c.complete],
        "unreferenced_shared_files": sorted(storage.shared_files() - referenced),
        "missing_shared_files": sorted(referenced - storage.shared_files()),
        "seconds": time.perf_counter() - started,
    }


def _check_exit(proc: subprocess.Popen[str]) -> None:
    proc.wait()
    if proc.returncode != 0:
        err = proc.stderr.read() if proc.stderr else ""
        msg = f"crash job exited with {proc.returncode}: {err[-3000:]}"
        raise RuntimeError(msg)


if __name__ == "__main__":
    run_job(_parser().parse_args())
