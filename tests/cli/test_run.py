"""``streamcore run`` in a subprocess: status line, SIGTERM/SIGINT, exit codes, restore, progress line."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

JOB = """
import time
import streamcore as sc

def numbers(split, offset):
    if offset % 50 == 0:
        time.sleep(0.001)
    return offset

def build_job(env):
    env.from_generator(numbers, name="numbers").map(lambda x: x).sink_to(sc.FileSink(OUT))

def hanging_job(env):
    def stuck(value):
        time.sleep(60)  # hang guard of the abort test: the process must not wait for it
    env.from_generator(numbers, name="numbers").sink_to(stuck)

def failing_job(env):
    def explode(x):
        if x == 100:
            raise ValueError("bad record 100")
        return x
    env.from_collection(range(1000), name="numbers").map(explode).sink_to(lambda v: None)

def bounded_job(env):
    env.from_generator(numbers, count=40_000, name="numbers").sink_to(lambda v: None)
    return "bounded"
"""


class Proc:
    """A ``streamcore run`` subprocess whose stderr lines are collected as they come."""

    def __init__(self, args: list[str], cwd: Path, stdout: int | None = subprocess.DEVNULL) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamcore.cli", "run", *args],
            cwd=cwd,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_line(self, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.lines)}")

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str]:
        rc = self.proc.wait(timeout_s)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.stdout = self.proc.stdout.read()
            self.proc.stdout.close()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return rc, "".join(self.lines)


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.py"
    path.write_text(f"OUT = {str(tmp_path / 'out')!r}\n" + JOB)
    return path


def committed(out: Path) -> list[int]:
    if not out.exists():
        return []
    return sorted(int(x) for f in out.iterdir() if not f.name.startswith(".") for x in f.read_text().split())


def wait_records(out_dir: Path, proc: Proc) -> None:
    # the status line comes first; then give the job a moment of real reading
    proc.wait_line(r"running: state backend heap")
    time.sleep(0.5)


def test_sigterm_stops_with_a_final_checkpoint_and_restore_goes_on_exactly_once(tmp_path, job_file):
    ck = tmp_path / "ck"
    p = Proc([str(job_file), "--checkpoints", str(ck)], tmp_path)
    status = p.wait_line(
        r"streamcore: job 'job' running: state backend heap, checkpoints (\S+), dashboard (\S+)"
    )
    assert status.group(1).rstrip(",") == str(ck) and status.group(2).startswith("http://127.0.0.1:")
    wait_records(tmp_path / "out", p)
    p.proc.send_signal(signal.SIGTERM)
    rc, err = p.finish()
    assert rc == 0, err
    assert "SIGTERM: stopping job 'job' with a final checkpoint" in err
    summary = re.search(r"job 'job' stopped: ([\d,]+) records .* (\d+) checkpoints \(last chk-(\d+)", err)
    assert summary, err
    assert "Traceback" not in err
    first = committed(tmp_path / "out")
    assert first == list(range(int(summary.group(1).replace(",", ""))))  # the final checkpoint committed all
    assert (ck / f"chk-{summary.group(3)}" / "_metadata").exists()
    # A second run restores the latest checkpoint and continues where the first stopped.
    p2 = Proc([str(job_file), "--checkpoints", str(ck), "--restore", "latest"], tmp_path)
    wait_records(tmp_path / "out", p2)
    p2.proc.send_signal(signal.SIGTERM)
    rc, err = p2.finish()
    assert rc == 0, err
    assert "restored from checkpoint" in err
    both = committed(tmp_path / "out")
    assert both == list(range(len(both))) and len(both) > len(first)


def test_savepoint_on_stop(tmp_path, job_file):
    p = Proc([str(job_file), "--checkpoints", str(tmp_path / "ck"), "--savepoint-on-stop"], tmp_path)
    wait_records(tmp_path / "out", p)
    p.proc.send_signal(signal.SIGTERM)
    rc, err = p.finish()
    assert rc == 0, err
    assert "with a savepoint" in err and f"savepoint {tmp_path / 'ck' / 'savepoints' / 'sp-'}" in err


def test_second_signal_aborts_at_once(tmp_path, job_file):
    p = Proc([f"{job_file}:hanging_job", "--no-metrics"], tmp_path)
    p.wait_line(r"running:")
    time.sleep(0.3)
    p.proc.send_signal(signal.SIGTERM)
    p.wait_line(r"SIGTERM: stopping job")
    p.proc.send_signal(signal.SIGTERM)
    rc, err = p.finish(timeout_s=20)
    assert rc == 128 + signal.SIGTERM
    assert "SIGTERM again: aborting job 'job' now" in err and "Traceback" not in err


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path, job_file):
    p = Proc([str(job_file), "--no-metrics"], tmp_path)
    p.wait_line(r"running:")
    p.proc.send_signal(signal.SIGINT)
    rc, err = p.finish()
    assert rc == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.count("SIGINT") == 1 and "dashboard off" in err


def test_a_failing_job_exits_1_with_one_line(tmp_path, job_file):
    p = Proc([f"{job_file}:failing_job", "--no-metrics", "--log-level", "WARNING"], tmp_path)
    rc, err = p.finish()
    assert rc == 1 and "Traceback" not in err
    failed = [line for line in err.splitlines() if "failed" in line]
    assert len(failed) == 1 and "bad record 100" in failed[0], err


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("missing.py", "no job file 'missing.py'"),
        ("no_such_module_xyz:build_job", "cannot import job module 'no_such_module_xyz'"),
        ("{job}:nothing", "has no function 'nothing'"),
    ],
)
def test_bad_job_specs(tmp_path, job_file, spec, match):
    p = Proc([spec.format(job=job_file)], tmp_path)
    rc, err = p.finish()
    assert rc == 1 and match in err and "Traceback" not in err


def test_progress_line_on_a_terminal_only(tmp_path, job_file):
    # A pipe: no progress line, the summary only.
    p = Proc([f"{job_file}:bounded_job", "--no-metrics"], tmp_path, stdout=subprocess.PIPE)
    rc, err = p.finish()
    assert rc == 0 and "records read" not in p.stdout and "job 'bounded' finished: 40,000 records" in err
    # A terminal: rich draws "records read ... /s ... watermark ... checkpoints".
    leader, follower = pty.openpty()
    try:
        p = Proc([f"{job_file}:bounded_job", "--no-metrics"], tmp_path, stdout=follower)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        rc, err = p.finish()
    finally:
        os.close(leader)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert rc == 0 and "records read" in screen and "checkpoints 0" in screen
