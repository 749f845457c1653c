"""tre-link: record linkage for trusted research environments."""

__version__ = "0.1.0"
