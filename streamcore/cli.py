"""The ``streamcore`` command: list and inspect checkpoints, dump state offline.

::

    streamcore checkpoints list DIR
    streamcore checkpoints inspect PATH [--json] [--no-validate]
    streamcore state dump PATH --operator UID --state NAME [--limit N]

``PATH`` is a ``chk-<id>`` or ``sp-<id>`` directory, or a checkpoint directory (its newest
complete checkpoint). ``state dump`` prints one JSON array ``[key, namespace, value]`` per
line (tuples become arrays, bytes ``{"$bytes": hex}``). Exit status: 0, 1 on a checkpoint
error (message on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from streamcore.errors import StreamcoreError

__all__ = ["main"]


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamcore", description="streamcore: checkpoints and state, offline.")
    sub = p.add_subparsers(dest="group", required=True)
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
