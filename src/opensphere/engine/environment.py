"""The environment kernels start with: enough to work, none of the server's secrets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Locale, identity and temp-dir settings a notebook expects; everything else in the
# server's environment (tokens, database URLs) stays out of user code's reach.
PASSED_THROUGH = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "LC_ALL", "TZ", "TMPDIR")


def kernel_environment() -> dict[str, str]:
    """The passed-through variables, with the venv's ``bin`` first on PATH for ``!pip``."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, os.environ.get("PATH", os.defpath)])
    return env
