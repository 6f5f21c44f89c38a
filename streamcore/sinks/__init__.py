"""Sinks: the contract, collect/print/callable sinks (files and Kafka in their own modules)."""

from streamcore.sinks.base import CallableSink, CollectSink, PrintSink, Sink, SinkOperator

__all__ = ["CallableSink", "CollectSink", "PrintSink", "Sink", "SinkOperator"]
