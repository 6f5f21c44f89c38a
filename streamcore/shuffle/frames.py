"""The records of a repartition topic: data, watermarks and idleness, each tagged with its writer.

Every record's value is one msgpack array (streamcore's value codec):

===========  =====================================  ===========================================
kind         array                                  meaning
===========  =====================================  ===========================================
data         ``[0, task, seq, timestamp, value]``   an element; ``seq`` counts the writer's data
watermark    ``[1, task, watermark]``               the writer's watermark (to every partition)
idle         ``[2, task, idle]``                    the writer's input became idle / active
===========  =====================================  ===========================================

``task`` is the writing task's id. ``seq`` grows by one per element the task writes,
and is part of its checkpoints, so a task restored from a checkpoint writes the elements
it replays with the same numbers again: a reader drops every element whose ``seq`` it has
passed, which makes the topic exactly-once even where transactions do not hide aborted
records (librdkafka's mock cluster) or are not used.
"""

from __future__ import annotations

from typing import Any

from streamcore.serde import msgpack_dumps, msgpack_loads

__all__ = ["DATA", "IDLE", "WATERMARK", "data_frame", "decode", "idle_frame", "watermark_frame"]

DATA = 0
WATERMARK = 1
IDLE = 2


def data_frame(task: int, seq: int, timestamp: int | None, value: Any) -> bytes:
    """The bytes of one element written by ``task`` as its ``seq``-th."""
    return msgpack_dumps([DATA, task, seq, timestamp, value])


def watermark_frame(task: int, watermark: int) -> bytes:
    """The bytes of ``task``'s watermark."""
    return msgpack_dumps([WATERMARK, task, watermark])


def idle_frame(task: int, idle: bool) -> bytes:
    """The bytes of ``task``'s input becoming idle (``True``) or active again."""
    return msgpack_dumps([IDLE, task, idle])


def decode(data: bytes) -> list[Any]:
    """The array of one frame."""
    return msgpack_loads(data)  # type: ignore[no-any-return]
