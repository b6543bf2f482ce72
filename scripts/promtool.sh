# Sourced by ./test: promtool (Prometheus's rule checker) for tests/test_deploy.py, taken from
# Debian's prometheus package into .cache/promtool once, unless one is on PATH already. Where
# it cannot be had, the tests that need it skip, except under CI, where they fail.
PROMTOOL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/promtool"
if ! command -v promtool >/dev/null 2>&1; then
  if [ ! -x "$PROMTOOL_DIR/usr/bin/promtool" ] && command -v apt-get >/dev/null 2>&1; then
    mkdir -p "$PROMTOOL_DIR"
    ( cd "$PROMTOOL_DIR" && rm -f prometheus_*.deb \
      && { apt-get download -qq prometheus 2>/dev/null \
           || { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && apt-get download -qq prometheus 2>/dev/null; }; } \
      && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb ) \
      || echo "promtool could not be fetched (apt-get download prometheus); its tests skip outside CI" >&2
  fi
  export PATH="$PROMTOOL_DIR/usr/bin:$PATH"
fi
