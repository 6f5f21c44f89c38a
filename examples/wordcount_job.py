"""A job for `streamcore run`: endless words, counted per word, printed as Flink prints them.

streamcore run examples/wordcount_job.py --checkpoints /tmp/wc-checkpoints
streamcore status http://127.0.0.1:PORT/     # the URL the run printed
streamcore stop http://127.0.0.1:PORT/ --savepoint
streamcore run examples/wordcount_job.py --checkpoints /tmp/wc-checkpoints --restore latest
"""

from __future__ import annotations

import time

import streamcore as sc

WORDS = ["to", "be", "or", "not", "to", "be", "that", "is", "the", "question"]


def words(split: int, offset: int) -> tuple[str, int]:
    if offset % 100 == 0:
        time.sleep(0.01)  # about 10k words a second: something to watch on the dashboard
    return (WORDS[offset % len(WORDS)], 1)


def build_job(env: sc.StreamEnvironment) -> str:
    """Build the job on ``env``; returns its name."""
    stream = env.from_generator(words, num_splits=2, name="words")
    stream.key_by(lambda w: w[0]).sum(1).uid("counts").print("wc")
    return "wordcount"
