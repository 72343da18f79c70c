"""OpenSphere: a self-hosted ML notebook platform that speaks the DataSphere API v2."""

import os

# Kernels are started with fork(); gRPC's fork handlers then run in the child before it
# execs and can abort it ("Check failed: next_worker->state == KICKED"). The server never
# uses gRPC in a forked child, so the handlers are switched off before gRPC loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
