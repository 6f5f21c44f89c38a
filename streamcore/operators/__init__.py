"""Operators, one module per family: basic, process, keyed base, watermarks, interval join, windows."""
