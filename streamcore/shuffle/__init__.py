"""Repartitioning through Kafka: how a key change crosses processes in a consumer-group job.

In a job whose tasks a consumer group assigns (``KafkaSource(assignment="group")``),
task ``p`` only sees partition ``p`` of its sources. A keyed operator whose key is not
how the input is partitioned (a ``key_by`` without ``partitioned=True``) therefore gets
its input through a *repartition topic*: the upstream part of every task writes each
record to the partition that owns its key group (:mod:`streamcore.shuffle.sink`), and
the downstream part of task ``p`` reads partition ``p`` of that topic
(:mod:`streamcore.shuffle.source`). Watermarks and idleness travel in the topic too,
so event time after the shuffle is what it would be in one process.
"""
