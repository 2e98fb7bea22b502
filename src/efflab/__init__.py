"""efflab: measure which efficiency technique saves training compute, and what it is worth at frontier scale."""

__version__ = "0.1.0"
