"""The ``streamcore`` command: run a job, control it from outside, inspect checkpoints and state.

::

    streamcore run JOB [--restore latest|PATH] [--checkpoints DIR] [--metrics-port N]
                       [--state-backend heap|rocksdb] [--savepoint-on-stop [DIR]] ...
    streamcore status URL [--json]
    streamcore savepoint URL [--dir DIR]
    streamcore stop URL [--savepoint] [--dir DIR]
    streamcore explain JOB [--json]
    streamcore checkpoints list DIR
    streamcore checkpoints inspect PATH [--json] [--no-validate]
    streamcore state dump PATH --operator UID --state NAME [--limit N]

``JOB`` is ``pkg.module:build_job`` or ``path/to/job.py`` (see :mod:`streamcore.launch`);
``URL`` is the dashboard URL ``streamcore run`` prints. ``PATH`` is a ``chk-<id>`` or
``sp-<id>`` directory, or a checkpoint directory (its newest complete checkpoint).
``state dump`` prints one JSON array ``[key, namespace, value]`` per line (tuples become
arrays, bytes ``{"$bytes": hex}``). Exit status: 0, 1 on an error (message on stderr),
2 on bad usage; ``run`` also 130 when stopped by Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from streamcore.errors import StreamcoreError

__all__ = ["add_run_arguments", "main", "parse_run_args", "run_options"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _jsonable(v) for k, v in value.items()}
    return value


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.checkpoint.reader import list_checkpoints

    rows = list_checkpoints(args.directory)
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        out.write(f"no checkpoints in {args.directory}\n")
        return 0
    out.write(
        f"{'ID':>6}  {'KIND':<10} {'STATUS':<10} {'CREATED (UTC)':<19}  {'SIZE':>10}  {'SHARED':>6}  JOB\n"
    )
    for r in rows:
        out.write(
            f"{r['id']:>6}  {r['kind']:<10} {r['status']:<10} {_when(r.get('created_ms')):<19}  "
            f"{_size(r.get('size_bytes')):>10}  {r.get('shared_files', '-')!s:>6}  {r.get('job') or '-'}\n"
        )
        if r["status"] == "corrupt":
            out.write(f"        {r['error']}\n")
    return 0


def _cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.checkpoint.reader import inspect

    report = inspect(args.path, validate=not args.no_validate)
    if args.json:
        out.write(json.dumps(_jsonable(report), indent=2) + "\n")
        return 0 if report.get("valid", True) else 1
    stats = report["stats"]
    out.write(f"{report['kind']} {report['id']} of job {report['job']!r}  ({report['path']})\n")
    out.write(
        f"  created {_when(report['created_ms'])} UTC, backend {report['backend']}, "
        f"max parallelism {report['max_parallelism']}, canonical {report['canonical']}\n"
    )
    out.write(
        f"  size {_size(stats.get('size_bytes'))}, written by this {report['kind']} "
        f"{_size(stats.get('incremental_bytes'))}, pause {stats.get('pause_ms', 0):.1f} ms\n"
    )
    out.write("sources:\n")
    for uid, src in report["sources"].items():
        for split, st in src.get("splits", {}).items():
            out.write(f"  {uid} / {split}: position {st.get('position')!r}\n")
    out.write("operators:\n")
    for uid, op in report["operators"].items():
        out.write(f"  {uid} ({op['type']}): {_size(op['size'])} in {op['file'] or '-'}\n")
        for name, st in op["states"].items():
            extra = []
            if "bytes" in st:
                extra.append(f"{_size(st['bytes'])} in {st['key_groups']} key groups")
            if st.get("ttl"):
                extra.append("ttl")
            out.write(f"    {name}: {st['kind']}{' (' + ', '.join(extra) + ')' if extra else ''}\n")
    if report["native_files"]:
        files = report["native_files"]
        shared = [f for f in files if "shared" in f]
        out.write(f"{report['backend']} files: {len(files)} ({len(shared)} shared)\n")
        for f in files:
            where = f"shared/{f['shared']}" if "shared" in f else "private"
            out.write(f"  {f['name']:<24} {_size(f['size']):>10}  {where}\n")
    if "valid" in report:
        out.write("valid: yes\n" if report["valid"] else f"valid: NO: {report['error']}\n")
    return 0 if report.get("valid", True) else 1


def _cmd_dump(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.checkpoint.reader import read_state

    for n, (key, ns, value) in enumerate(read_state(args.path, args.operator, args.state, raw=args.raw)):
        if args.limit is not None and n >= args.limit:
            break
        out.write(json.dumps(_jsonable([key, ns, value])) + "\n")
    return 0


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``streamcore run`` (a ``--workers`` supervisor reuses them)."""
    p.add_argument(
        "job", help="pkg.module:build_job or path/to/job.py[:function] (default function build_job)"
    )
    p.add_argument(
        "--name", help="the job name (default: the module or file name, or what build_job returns)"
    )
    p.add_argument("--restore", metavar="latest|PATH", help="restore from the newest checkpoint or a path")
    p.add_argument(
        "--checkpoints", metavar="DIR", help="checkpoint directory (enables checkpoints every 10 s)"
    )
    p.add_argument("--state-backend", choices=["heap", "rocksdb"], help="keyed state backend (default heap)")
    p.add_argument("--state-dir", metavar="DIR", help="RocksDB working directory (default: a temporary one)")
    p.add_argument(
        "--metrics-port", type=int, default=0, help="dashboard, REST API and /metrics port (0: free)"
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="address to serve on (default loopback)")
    p.add_argument("--no-metrics", action="store_true", help="serve no dashboard, REST API or /metrics")
    p.add_argument("--pushgateway", metavar="HOST:PORT", help="also push metrics to this Pushgateway")
    p.add_argument(
        "--savepoint-on-stop",
        nargs="?",
        const="",
        metavar="DIR",
        help="on SIGTERM/SIGINT take a savepoint (into DIR, default <checkpoints>/savepoints)",
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress line")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO (default), WARNING or ERROR")
    p.add_argument("--log-json", action="store_true", help="structured logs, one JSON object per line")


def run_options(args: argparse.Namespace) -> Any:
    """The :class:`streamcore.launch.RunOptions` of parsed ``run`` arguments."""
    from streamcore.launch import RunOptions

    return RunOptions(
        job=args.job,
        name=args.name,
        restore=args.restore,
        checkpoints=args.checkpoints,
        state_backend=args.state_backend,
        state_dir=args.state_dir,
        metrics_port=None if args.no_metrics else args.metrics_port,
        metrics_host=args.metrics_host,
        pushgateway=args.pushgateway,
        savepoint_on_stop=args.savepoint_on_stop,
        progress=args.progress,
        log_level=args.log_level,
        log_json=args.log_json,
    )


def parse_run_args(argv: Sequence[str]) -> Any:
    """Parse the arguments of ``streamcore run`` (without the ``run``) into ``RunOptions``."""
    p = argparse.ArgumentParser(prog="streamcore run")
    add_run_arguments(p)
    return run_options(p.parse_args(argv))


def _cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.launch import run_job

    return run_job(run_options(args))


def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.observe.client import JobClient

    snap = JobClient(args.url, timeout_s=10).overview()
    if args.json:
        out.write(json.dumps(snap, indent=2) + "\n")
        return 0
    job = snap.get("job", {})
    out.write(
        f"job {job.get('name')!r}: {job.get('state')}, up {job.get('duration_s', 0):.0f} s, "
        f"{job.get('records_read', 0):,} records read ({job.get('records_read_per_s', 0):,.0f}/s), "
        f"restarts {job.get('restarts', 0)}\n"
    )
    for v in snap.get("vertices", []):
        for tid, f in v.get("tasks", {}).items():
            out.write(
                f"  {v['uid']:<24} task {tid}  in {f.get('records_in_per_s', 0):>10,.0f}/s  "
                f"out {f.get('records_out_per_s', 0):>10,.0f}/s  "
                f"busy {100 * (f.get('busy_ratio') or 0):5.1f}%  "
                f"backpressured {100 * (f.get('backpressured_ratio') or 0):5.1f}%\n"
            )
    cps = snap.get("checkpoints")
    if cps:
        out.write(
            f"checkpoints: {cps.get('completed', 0)} completed, {cps.get('failed', 0)} failed, "
            f"last {cps.get('last_completed_id')} in {cps.get('directory')}\n"
        )
    return 0


def _cmd_savepoint(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.observe.client import JobClient

    out.write(JobClient(args.url).savepoint(args.dir) + "\n")
    return 0


def _cmd_stop(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.observe.client import JobClient

    answer = JobClient(args.url).stop(savepoint=args.savepoint, directory=args.dir)
    if answer.get("savepoint"):
        out.write(f"{answer['savepoint']}\n")
    else:
        out.write("stopping\n")
    return 0


def _cmd_explain(args: argparse.Namespace, out: TextIO) -> int:
    from streamcore.environment import StreamEnvironment
    from streamcore.launch import load_job

    fn, _ = load_job(args.job)
    env = StreamEnvironment()
    fn(env)
    if args.json:
        from streamcore.plan import plan

        out.write(json.dumps(plan(env), indent=2, default=str) + "\n")
    else:
        out.write(env.explain() + "\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamcore", description="streamcore: run jobs, control them, inspect checkpoints and state."
    )
    sub = p.add_subparsers(dest="group", required=True)
    run = sub.add_parser("run", help="run a job in this process (SIGTERM stops it with a final checkpoint)")
    add_run_arguments(run)
    run.set_defaults(func=_cmd_run)
    status = sub.add_parser("status", help="the status of a running job (through its REST API)")
    status.add_argument("url", help="the job's dashboard URL, as `streamcore run` printed it")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_cmd_status)
    sp = sub.add_parser("savepoint", help="take a savepoint of a running job; prints its path")
    sp.add_argument("url", help="the job's dashboard URL")
    sp.add_argument("--dir", help="savepoint directory (default <checkpoints>/savepoints)")
    sp.set_defaults(func=_cmd_savepoint)
    stop = sub.add_parser("stop", help="stop a running job (with a final checkpoint, or a savepoint)")
    stop.add_argument("url", help="the job's dashboard URL")
    stop.add_argument("--savepoint", action="store_true", help="take a savepoint first; prints its path")
    stop.add_argument("--dir", help="savepoint directory (default <checkpoints>/savepoints)")
    stop.set_defaults(func=_cmd_stop)
    ex = sub.add_parser("explain", help="print a job's plan: operators, uids, keys, state, sources and sinks")
    ex.add_argument("job", help="pkg.module:build_job or path/to/job.py")
    ex.add_argument("--json", action="store_true", help="machine-readable output")
    ex.set_defaults(func=_cmd_explain)
    ck = sub.add_parser("checkpoints", help="list or inspect checkpoints and savepoints")
    ck_sub = ck.add_subparsers(dest="command", required=True)
    ls = ck_sub.add_parser("list", help="every checkpoint and savepoint of a checkpoint directory")
    ls.add_argument("directory")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_cmd_list)
    ins = ck_sub.add_parser("inspect", help="operators, states, sizes, source positions, shared files")
    ins.add_argument("path")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.add_argument("--no-validate", action="store_true", help="skip checking file sizes and checksums")
    ins.set_defaults(func=_cmd_inspect)
    st = sub.add_parser("state", help="read keyed state offline")
    st_sub = st.add_subparsers(dest="command", required=True)
    dump = st_sub.add_parser("dump", help="print the rows of one state as JSON lines [key, namespace, value]")
    dump.add_argument("path")
    dump.add_argument("--operator", required=True, help="the operator uid")
    dump.add_argument("--state", required=True, help="the state name")
    dump.add_argument("--limit", type=int, default=None, help="print at most N rows")
    dump.add_argument("--raw", action="store_true", help="keep TTL wrappers [expires_at, value]")
    dump.set_defaults(func=_cmd_dump)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamcore`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args, sys.stdout))
    except StreamcoreError as exc:
        sys.stderr.write(f"streamcore: error: {exc}\n")
        return 1
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
