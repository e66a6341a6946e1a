"""probed: a health-and-dependency probe daemon."""

__version__ = "0.1.0"
