#!/usr/bin/env bash
# Lint and run the test suite; arguments go to pytest and its exit code is ours.
# The suite runs every storage test against SQLite and a throwaway PostgreSQL
# server, so the PostgreSQL server binaries are installed here when missing (and
# Chromium for the IDE's browser test).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh

find_pg_bin() {
  local dir
  # Newest major version first.
  for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

install_postgresql() {
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    sudo=(sudo)
  fi
  echo "test.sh: PostgreSQL server binaries not found; installing Debian package postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  # The tests start their own throwaway servers; skip the package's default cluster.
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
  "${sudo[@]}" sed -ri 's/^#?\s*create_main_cluster\s*=.*$/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold postgresql >/dev/null
}

if [[ -z "${OPENSPHERE_PG_BIN:-}" ]]; then
  if ! pg_bin="$(find_pg_bin)"; then
    install_postgresql
    pg_bin="$(find_pg_bin)" || { echo "test.sh: initdb still missing after install" >&2; exit 1; }
  fi
  export OPENSPHERE_PG_BIN="$pg_bin"
fi

install_chromium() {
  local sudo=()
  if [[ $EUID -ne 0 ]]; then
    sudo=(sudo)
  fi
  echo "test.sh: /usr/bin/chromium not found; installing Debian package chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

# The IDE's browser test drives Debian's Chromium through playwright, never a browser
# build that playwright downloads.
if [[ ! -x /usr/bin/chromium ]]; then
  install_chromium
fi

# Lint problems fail the run, but never hide the test results: pytest always runs.
lint=0
.venv/bin/ruff check . || lint=$?

tests=0
.venv/bin/python -m pytest "$@" || tests=$?
if [[ $tests -ne 0 ]]; then
  exit "$tests"
fi
if [[ $lint -ne 0 ]]; then
  echo "test.sh: tests passed but ruff found problems (see above)" >&2
fi
exit "$lint"
