"""Sources: the split-reader contract, collections, generators (Kafka in ``streamcore.sources.kafka``)."""

from streamcore.sources.base import Source, SplitReader
from streamcore.sources.collection import CollectionSource, GeneratorSource

__all__ = ["CollectionSource", "GeneratorSource", "Source", "SplitReader"]
