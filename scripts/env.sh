# Sourced by the other scripts: where builds and caches live.
# Build output and the sandbox cache stay outside the clone (under ~/.cache), so
# a fresh clone on the same machine rebuilds incrementally; DuckDB's C++ goes
# through ccache when it is installed, so it is compiled once per machine.
# Source it after scripts/install-deps, so every command sees the same CC/CXX.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sandstack-target}"
export SANDSTACK_HOME="${SANDSTACK_HOME:-$HOME/.cache/sandstack}"
if command -v ccache >/dev/null 2>&1; then
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-8G}"
  export CC="${CC:-ccache gcc}"
  export CXX="${CXX:-ccache g++}"
fi
