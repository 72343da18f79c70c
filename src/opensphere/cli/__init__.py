"""The ``opensphere`` command line: ``serve`` plus client commands for a running server."""
