#!/usr/bin/env bash
# Start an OpenSphere server from a checkout; all arguments go to `opensphere serve`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec .venv/bin/opensphere serve "$@"
