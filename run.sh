#!/usr/bin/env bash
# Set up (or reuse) the project's virtualenv, then run the demo or the tests.
#   bash run.sh demo    local broker + pipeline + simulated fleet with an incident
#   bash run.sh test    ruff, mypy and the whole test suite against a real local broker
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$candidate"; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "run.sh: Python >= 3.11 is required" >&2; exit 1; }

VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.prodmon-installed"
WANT="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[test]"
  echo "$WANT" > "$STAMP"
fi

# System tools the tests drive for real: a headless browser (web dashboard) and a
# Prometheus server (scraping /metrics). Installed from Debian's packages when missing.
ensure_system_tools() {
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "run.sh: installing ${missing[*]} (Debian packages)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "run.sh: missing ${missing[*]}; install them (apt-get) for the browser and" \
      "Prometheus tests" >&2
  fi
}

case "${1:-}" in
  demo)
    shift; exec "$VENV/bin/prodmon" demo "$@" ;;
  test)
    shift
    # Byte-compiled modules, and pytest's rewritten test modules, are cached in
    # __pycache__ (ignored by git): each test process after the first starts in about
    # half the time, where an environment that turns the cache off would recompile them.
    unset PYTHONDONTWRITEBYTECODE
    ensure_system_tools
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"   # the whole package (pyproject.toml [tool.mypy])
    # pytest exits 5 when it collects nothing: that is a failure here too.
    PYTEST=("$VENV/bin/python" -m pytest -q -p no:cacheprovider)
    if [ "$#" -gt 0 ]; then exec "${PYTEST[@]}" "$@"; fi
    # Two lanes: the broker-free tests first (fast, fail early; CPU-bound, so one worker
    # per core), then the tests that need a broker (tests/conftest.py marks them), over 4
    # workers that each start their own; they mostly wait on the broker, so more workers
    # than cores, and the few heavy tests (marked `heavy`: seconds of CPU each, no broker:
    # fleet-scale state, long equivalence runs) run beside them on the cores those
    # workers leave idle.
    "${PYTEST[@]}" -m "not broker and not heavy" -n "${PRODMON_FAST_WORKERS:-2}" \
      --dist load --maxschedchunk 1
    exec "${PYTEST[@]}" -m "broker or heavy" -n "${PRODMON_TEST_WORKERS:-4}" ;;
  *)
    echo "usage: bash run.sh demo|test" >&2; exit 2 ;;
esac
