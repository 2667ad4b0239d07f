# Shared by the scripts in this folder: pinned tool versions and where they live.
# Sourced, not run. Every path is derived here so that setup, build and tests agree.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# worker-build is pinned to the workers-rs release the crate uses (worker 0.8.x).
WORKER_BUILD_VERSION="0.8.7"

# Host tools built with `cargo install` are kept per version outside the checkout, so a fresh
# clone on the same machine reuses them instead of compiling them again.
TOOLS_DIR="${WECHAT_EDGE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wechat-token-edge}"

# wasm-bindgen's CLI must match the wasm-bindgen library in Cargo.lock exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
    "$REPO_ROOT/Cargo.lock"
}

worker_build_bin() { echo "$TOOLS_DIR/worker-build-$WORKER_BUILD_VERSION/bin/worker-build"; }
wasm_bindgen_bin() { echo "$TOOLS_DIR/wasm-bindgen-$(wasm_bindgen_version)/bin/wasm-bindgen"; }

log() { printf '\033[1m[%s]\033[0m %s\n' "$(basename "$0")" "$*" >&2; }
