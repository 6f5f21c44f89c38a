"""Sinks: the contract, collect/print/callable sinks (files and Kafka in their own modules)."""

from streamcore.sinks.base import CallableSink, CollectSink, PrintSink, Sink, SinkOperator
from streamcore.sinks.file import FileSink
from streamcore.sinks.two_phase import TwoPhaseCommitSink

__all__ = [
    "CallableSink",
    "CollectSink",
    "FileSink",
    "PrintSink",
    "Sink",
    "SinkOperator",
    "TwoPhaseCommitSink",
]
