#!/usr/bin/env bash
# Runs the whole suite on SQLite and on PostgreSQL at the same time, each in its own pytest
# process with its own temporary directory and its own slice of loopback ports (the real daemons
# the tests start bind ports of their own; two runs picking from one range could collide).
# Most of the suite waits on daemons, networks and disks, so two runs side by side take little
# longer than the slower one alone. Each run's output goes to a log that is printed whole, one
# after the other, when both have finished; the exit status fails if either run failed.
#
#   scripts/run-tests.sh [pytest arguments...]
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

run() {  # backend, port range
  local backend=$1 ports=$2
  CERTPOST_TEST_DB=$backend CERTPOST_TEST_PORTS=$ports \
    "$python" -m pytest --basetemp="$logs/tmp-$backend" "${@:3}" >"$logs/$backend.log" 2>&1
  echo $? >"$logs/$backend.rc"
}

# The linter first (pinned in pyproject.toml's dev extra, configured there): a finding fails
# the run like a failed test, but both suites still run so that one push shows everything.
lint=0
"$(dirname "$python")/ruff" check --quiet app tests bench >"$logs/lint.log" 2>&1 || lint=1

start=$(date +%s)
run sqlite 10000-20999 "$@" &
run postgres 21000-32000 "$@" &
wait
status=$lint
echo "=================== ruff check (exit $lint) ==================="
cat "$logs/lint.log"
for backend in sqlite postgres; do
  rc=$(cat "$logs/$backend.rc")
  echo "=================== $backend (exit $rc) ==================="
  cat "$logs/$backend.log"
  [ "$rc" = 0 ] || status=1
done
echo "both suites finished in $(( $(date +%s) - start )) s"
exit $status
