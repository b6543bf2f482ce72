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
installed() { [ "$(cat "$VENV/.installed-$1" 2>/dev/null)" = "$2" ]; }
dev_want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha256sum | cut -d' ' -f1)"
# A venv made for the tests holds every runtime requirement too: ./run after ./test installs nothing.
if ! installed "$(basename "$REQS" .txt)" "$want" && ! { [ "$REQS" = "requirements.txt" ] && installed requirements-dev "$dev_want"; }; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$REQS" >&2
  echo "$want" > "$STAMP"
fi
