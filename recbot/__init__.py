"""recbot as a running program: the composition root (app), serving until stopped
(serve), and the command line (`python -m recbot`). The only package that imports
both the listeners (handlers/) and the domain (bot/)."""
