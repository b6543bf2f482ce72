# Sourced by ./run and ./test: make .venv hold exactly the pinned requirements.
# Reinstalls only when a requirements file changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="${1:-requirements.txt}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="$ROOT/.venv"
STAMP="$VENV/.installed-$(basename "$REQS" .txt)"
want="$(cat "$ROOT/requirements.txt" "$ROOT/$REQS" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$REQS" >&2
  echo "$want" > "$STAMP"
fi
