"""lwrecipe: pinned, reproducible recipes that build Linux running natively as WebAssembly."""

__version__ = "0.1.0"
