"""recbot: the domain and the plumbing."""
