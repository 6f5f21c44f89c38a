"""Type information in PyFlink's spelling, accepted where PyFlink users pass it.

``ValueStateDescriptor("n", Types.INT())`` is how PyFlink declares state; streamcore
stores every value with msgpack (or a serializer you give), so type information is only
recorded (``descriptor.type_info``) and shown by ``env.explain()``; it never changes how
values are stored, and it is never mistaken for a default value, a TTL or a serializer.
PyFlink's own ``pyflink.common.Types`` objects are recognised the same way.

>>> Types.INT()
Types.INT()
>>> Types.TUPLE([Types.STRING(), Types.LONG()])
Types.TUPLE([Types.STRING(), Types.LONG()])
"""

from __future__ import annotations

from typing import Any

__all__ = ["TypeInformation", "Types", "is_type_information"]


class TypeInformation:
    """A named type (with element types for composites); informational only."""

    __slots__ = ("args", "name")

    def __init__(self, name: str, args: tuple[Any, ...] = ()) -> None:
        self.name = name
        self.args = args

    def __repr__(self) -> str:
        if not self.args:
            return f"Types.{self.name}()"
        return f"Types.{self.name}({', '.join(repr(a) for a in self.args)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TypeInformation) and (self.name, self.args) == (other.name, other.args)

    def __hash__(self) -> int:
        return hash((self.name, repr(self.args)))


def is_type_information(value: Any) -> bool:
    """Whether ``value`` is type information (streamcore's or PyFlink's)."""
    if isinstance(value, TypeInformation):
        return True
    return any(c.__name__ == "TypeInformation" for c in type(value).__mro__)


def _simple(name: str) -> Any:
    def make() -> TypeInformation:
        return TypeInformation(name)

    make.__name__ = name
    make.__doc__ = f"PyFlink's ``Types.{name}()``."
    return staticmethod(make)


class Types:
    """PyFlink's ``Types`` factory: ``Types.INT()``, ``Types.STRING()``, ``Types.TUPLE([...])``..."""

    INT = _simple("INT")
    LONG = _simple("LONG")
    SHORT = _simple("SHORT")
    BYTE = _simple("BYTE")
    FLOAT = _simple("FLOAT")
    DOUBLE = _simple("DOUBLE")
    BOOLEAN = _simple("BOOLEAN")
    STRING = _simple("STRING")
    CHAR = _simple("CHAR")
    BIG_INT = _simple("BIG_INT")
    BIG_DEC = _simple("BIG_DEC")
    SQL_DATE = _simple("SQL_DATE")
    SQL_TIME = _simple("SQL_TIME")
    SQL_TIMESTAMP = _simple("SQL_TIMESTAMP")
    INSTANT = _simple("INSTANT")
    PICKLED_BYTE_ARRAY = _simple("PICKLED_BYTE_ARRAY")
    PRIMITIVE_ARRAY_BYTE = _simple("PRIMITIVE_ARRAY_BYTE")

    @staticmethod
    def TUPLE(field_types: list[Any]) -> TypeInformation:
        """A tuple of ``field_types``."""
        return TypeInformation("TUPLE", (list(field_types),))

    @staticmethod
    def ROW(field_types: list[Any]) -> TypeInformation:
        """A row of ``field_types``."""
        return TypeInformation("ROW", (list(field_types),))

    @staticmethod
    def ROW_NAMED(field_names: list[str], field_types: list[Any]) -> TypeInformation:
        """A row with named fields."""
        return TypeInformation("ROW_NAMED", (list(field_names), list(field_types)))

    @staticmethod
    def LIST(element_type: Any) -> TypeInformation:
        """A list of ``element_type``."""
        return TypeInformation("LIST", (element_type,))

    @staticmethod
    def MAP(key_type: Any, value_type: Any) -> TypeInformation:
        """A map from ``key_type`` to ``value_type``."""
        return TypeInformation("MAP", (key_type, value_type))

    @staticmethod
    def BASIC_ARRAY(element_type: Any) -> TypeInformation:
        """An array of ``element_type``."""
        return TypeInformation("BASIC_ARRAY", (element_type,))

    @staticmethod
    def PRIMITIVE_ARRAY(element_type: Any) -> TypeInformation:
        """A primitive array of ``element_type``."""
        return TypeInformation("PRIMITIVE_ARRAY", (element_type,))
