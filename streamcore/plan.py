"""The plan of a job, for people: operators, uids, keys, state, windows, sources and sinks.

``env.explain()`` (and ``streamcore explain job.py``) builds the job's operators the way a
run does, on a scratch heap state backend, and opens only the keyed operators (so their
functions register their state: user ``open`` methods of keyed functions run; sources and
sinks are never opened, so nothing connects anywhere). It then describes every node:

* sources and sinks: their class and public configuration, secrets masked (any setting
  whose name mentions a password, secret, token, credential, private key, API key, JAAS
  config or basic-auth user info);
* keyed operators: the key selector of each input, every state (name, kind, TTL) with the
  job's backend, timers and time-ordered buffers;
* windows: assigner, trigger, allowed lateness; interval joins: bounds.

>>> import streamcore as sc
>>> env = sc.StreamEnvironment()
>>> numbers = env.from_collection([1, 2], name="numbers")
>>> _ = numbers.key_by(lambda x: x % 2).reduce(max).print()
>>> print(env.explain())  # doctest: +ELLIPSIS
job plan (state backend heap, checkpoints off, restarts: no restarts)
  numbers [source] uid=numbers: CollectionSource elements=[1, 2]
      bounded, watermarks: none
  reduce [reduce] uid=reduce <- numbers: KeyedProcessOperator
      key: key_by(<lambda>)
      state reduce: value (heap)
  sink [sink] uid=sink <- reduce: PrintSink ...
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["MASK", "describe_config", "explain", "plan"]

#: what a masked secret shows.
MASK = "***"

_SECRET = re.compile(
    r"passw(or)?d|secret|token|credential|jaas|private|api[._-]?key|user[._]info", re.IGNORECASE
)


def _simple(value: Any, depth: int = 0) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)) and depth < 2:
        return [_simple(v, depth + 1) for v in value][:20]
    if isinstance(value, dict) and depth < 2:
        return {str(k): (MASK if _SECRET.search(str(k)) else _simple(v, depth + 1)) for k, v in value.items()}
    if callable(value):
        return f"<{getattr(value, '__qualname__', type(value).__name__)}>"
    return f"<{type(value).__name__}>"


def describe_config(obj: Any) -> dict[str, Any]:
    """The public configuration of a source or sink, secrets masked.

    ``obj.describe()`` is used when the object has one; otherwise its public attributes.

    >>> class S:
    ...     def __init__(self):
    ...         self.topic = "t"
    ...         self.config = {"sasl.password": "hunter2", "acks": "all"}
    >>> describe_config(S())
    {'type': 'S', 'topic': 't', 'config': {'sasl.password': '***', 'acks': 'all'}}
    """
    own = getattr(obj, "describe", None)
    if callable(own):
        described = own()
        if isinstance(described, dict):
            return {"type": type(obj).__name__, **_simple(described)}
    out: dict[str, Any] = {"type": type(obj).__name__}
    for name, value in vars(obj).items():
        if name.startswith("_"):
            continue
        out[name] = MASK if _SECRET.search(name) and value is not None else _simple(value)
    return out


def _function(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return "<lambda>" if name.endswith("<lambda>") else name


def plan(env: Any) -> dict[str, Any]:
    """The plan as a dict: ``{"job": {...}, "nodes": [...]}`` (see :func:`explain`)."""
    from streamcore.graph import StreamGraph
    from streamcore.operators.base import OperatorRuntime
    from streamcore.runtime.task import build_plan
    from streamcore.state.factory import StateBackendFactory

    graph: StreamGraph = env.graph
    graph.resolve_uids()
    scratch = StateBackendFactory("heap", None, env.clock)
    physical = build_plan(graph, OperatorRuntime(env.clock, env.max_parallelism, scratch, "explain"))
    cp = env.checkpoint_config
    restart = env.restart_strategy
    job = {
        "state_backend": env.state_backend,
        "state_dir": str(env.state_dir) if env.state_dir else None,
        "checkpoints": str(cp.directory) if cp is not None else None,
        "checkpoint_every_records": cp.every_records if cp is not None else None,
        "checkpoint_every_ms": cp.every_ms if cp is not None else None,
        "restart_strategy": restart.describe() if restart is not None else "no restarts",
    }
    nodes = []
    try:
        for node in graph.nodes:
            built = physical.by_uid[node.resolved_uid]
            entry: dict[str, Any] = {
                "uid": node.resolved_uid,
                "name": node.name,
                "kind": node.kind,
                "inputs": [p.resolved_uid + (f"[{tag}]" if tag else "") for p, _, tag in node.inputs],
            }
            if node.kind == "source":
                entry["class"] = type(node.source).__name__
                entry["config"] = describe_config(node.source)
                entry["bounded"] = bool(node.source.bounded)
                wm = node.watermarks
                entry["watermarks"] = wm.description if wm is not None else None
            else:
                entry["class"] = type(built).__name__
                _describe_operator(built, entry, env.state_backend)
            nodes.append(entry)
    finally:
        for op in physical.operators:
            try:
                op.close()
            except Exception:
                pass
        scratch.close()
    return {"job": job, "nodes": nodes}


def _describe_operator(op: Any, entry: dict[str, Any], backend: str) -> None:
    sink = getattr(op, "sink", None)
    if sink is not None:
        entry["class"] = type(sink).__name__
        entry["config"] = describe_config(sink)
        entry["exactly_once"] = bool(sink.exactly_once)
        return
    selectors = getattr(op, "key_selectors", None)
    if selectors:
        entry["keys"] = [_function(k) for k in selectors]
        try:
            op.open()
            described = op.describe_state() or {}
        except Exception as exc:  # user open() needing something the plan cannot give
            described = {}
            entry["state_error"] = f"{type(exc).__name__}: {exc}"
        entry["state"] = {
            name: {"kind": st["kind"], "ttl": st["ttl"], "backend": backend}
            for name, st in (described.get("states") or {}).items()
        }
        entry["timers"] = described.get("timers", [])
        entry["buffers"] = described.get("time_ordered", [])
    assigner = getattr(op, "assigner", None)
    if assigner is not None:
        entry["window"] = {
            "assigner": repr(assigner),
            "trigger": repr(getattr(op, "trigger", None)),
            "allowed_lateness_ms": getattr(op, "allowed_lateness", 0),
        }
    if hasattr(op, "lower") and hasattr(op, "upper"):
        entry["interval"] = [op.lower, op.upper]
    fn = getattr(op, "fn", None) or getattr(op, "function", None)
    if fn is not None:
        entry["function"] = _function(fn)


def explain(env: Any) -> str:
    """The plan of ``env``'s job as text (one block per node, upstream first)."""
    p = plan(env)
    job = p["job"]
    lines = [
        f"job plan (state backend {job['state_backend']}"
        + (f" in {job['state_dir']}" if job["state_dir"] else "")
        + (
            f", checkpoints in {job['checkpoints']} every "
            + " or ".join(
                x
                for x in (
                    f"{job['checkpoint_every_records']} records" if job["checkpoint_every_records"] else "",
                    f"{job['checkpoint_every_ms']} ms" if job["checkpoint_every_ms"] else "",
                )
                if x
            )
            if job["checkpoints"]
            else ", checkpoints off"
        )
        + f", restarts: {job['restart_strategy']})"
    ]
    for n in p["nodes"]:
        head = f"  {n['name']} [{n['kind']}] uid={n['uid']}"
        if n["inputs"]:
            head += " <- " + ", ".join(n["inputs"])
        head += f": {n['class']}"
        if "config" in n:
            cfg = {k: v for k, v in n["config"].items() if k != "type" and v not in (None, {}, [])}
            head += " " + ", ".join(f"{k}={v!r}" for k, v in cfg.items())
        lines.append(head)
        if n["kind"] == "source":
            lines.append(
                f"      {'bounded' if n['bounded'] else 'unbounded'}, watermarks: {n['watermarks'] or 'none'}"
            )
        if n.get("exactly_once"):
            lines.append("      delivery: exactly once (two-phase commit on checkpoints)")
        if "keys" in n:
            lines.append("      key: " + ", ".join(f"key_by({k})" for k in n["keys"]))
            for name, st in n.get("state", {}).items():
                lines.append(
                    f"      state {name}: {st['kind']}{' with TTL' if st['ttl'] else ''} ({st['backend']})"
                )
            if n.get("buffers"):
                lines.append(f"      buffers: {', '.join(n['buffers'])}")
            if n.get("state_error"):
                lines.append(f"      state unknown: open() failed: {n['state_error']}")
        if "window" in n:
            w = n["window"]
            lines.append(
                f"      window: {w['assigner']}, trigger {w['trigger']}, "
                f"allowed lateness {w['allowed_lateness_ms']} ms"
            )
        if "interval" in n:
            lines.append(f"      interval: between({n['interval'][0]}, {n['interval'][1]})")
    return "\n".join(lines)
