# Sourced by scripts/sandbox, scripts/test and benchmarks: makes .venv with tljh-admin
# (editable) and its test extras, from the system python TLJH itself uses.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$REPO/.venv"

pick_python() {
  local candidate
  for candidate in "${TLJH_SYSTEM_PYTHON:-}" /usr/bin/python3 "$(command -v python3 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] &&
       "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "tljh-admin needs Python >= 3.10 with venv (apt install python3-venv)" >&2
  exit 2
}

# $1: venv folder, $2: interpreter, rest: extra requirements (e.g. a Typer pin)
make_venv() {
  local venv=$1 python=$2
  shift 2
  local stamp="$venv/.tljh-admin-installed"
  if [ -f "$stamp" ] && [ "$stamp" -nt "$REPO/pyproject.toml" ] && [ "$(cat "$stamp")" = "$*" ]; then
    return
  fi
  echo "[setup] $venv from $python" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$REPO[test]" "$@"
  echo "$*" > "$stamp"
}

SETUP_PYTHON=$(pick_python)
make_venv "$VENV" "$SETUP_PYTHON"
