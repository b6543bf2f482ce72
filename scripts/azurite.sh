# Sourced by ./test: install Azurite (Azure Blob Storage emulator, npm) into
# .cache/azurite for the storage-probe tests, once per version. Without node
# and npm the tests that need it skip, except under CI, where they fail.
AZURITE_VERSION=3.37.0
AZURITE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/azurite"
if command -v npm >/dev/null 2>&1; then
  if [ "$(cat "$AZURITE_DIR/.installed" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
    mkdir -p "$AZURITE_DIR"
    npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
    echo "$AZURITE_VERSION" > "$AZURITE_DIR/.installed"
  fi
fi
