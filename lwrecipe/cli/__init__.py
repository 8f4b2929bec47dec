"""The command line: parsing, one module per command group, and printing. Commands call
the library below and format what it returns; no build logic lives here.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
