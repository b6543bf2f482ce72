"""recbot: the domain and the plumbing."""

__version__ = "0.1.0"  # pyproject.toml's version (tests/test_metrics.py checks they agree)
