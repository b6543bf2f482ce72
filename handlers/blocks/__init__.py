"""Block Kit, one module per surface."""
