#!/usr/bin/env bash
# Prepare the development environment: a .venv with OpenSphere installed editable,
# including the dev extra. Cheap to call repeatedly: pip only runs again when
# pyproject.toml changes, so serve.sh and test.sh can call it on every start.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=.venv
STAMP="$VENV/.opensphere-setup-stamp"

if [[ ! -x "$VENV/bin/python" ]]; then
  PYTHON="${PYTHON:-python3}"
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup.sh: $PYTHON is $("$PYTHON" -V 2>&1); OpenSphere needs Python >= 3.11" >&2
    echo "setup.sh: set PYTHON=/path/to/python3.11 or newer" >&2
    exit 1
  fi
  echo "setup.sh: creating $VENV with $("$PYTHON" -V 2>&1)" >&2
  if ! "$PYTHON" -m venv "$VENV"; then
    # Debian splits venv/ensurepip out of python3; fetch it once, then retry.
    rm -rf "$VENV"
    command -v apt-get >/dev/null || exit 1
    sudo=()
    [[ $EUID -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv "$VENV"
  fi
  rm -f "$STAMP"
fi

wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$wanted" ]]; then
  echo "setup.sh: installing opensphere[dev] into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
  echo "$wanted" > "$STAMP"
fi
