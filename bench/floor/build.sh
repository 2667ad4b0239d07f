#!/usr/bin/env bash
# Builds the floor worker with the tools scripts/setup installed (as scripts/build.sh does for
# the server), into bench/floor/build; skipped when the build is newer than the sources.
set -euo pipefail
source "$(dirname "$0")/../../scripts/lib.sh"
cd "$(dirname "$0")"
if [ -f build/index.js ] && [ -z "$(find src Cargo.toml -newer build/index.js -print -quit)" ]; then
  exit 0
fi
export WASM_BINDGEN_BIN WASM_OPT_BIN ESBUILD_BIN CARGO_TARGET_DIR
WASM_BINDGEN_BIN="$(wasm_bindgen_bin)"
WASM_OPT_BIN="$REPO_ROOT/node_modules/.bin/wasm-opt"
ESBUILD_BIN="$REPO_ROOT/node_modules/.bin/esbuild"
CARGO_TARGET_DIR="$REPO_ROOT/target/bench-floor"
"$(worker_build_bin)" --release
"$WASM_OPT_BIN" --enable-bulk-memory --enable-reference-types --enable-exception-handling \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-multivalue \
  -Oz --strip-debug build/index_bg.wasm -o build/index_bg.wasm
touch build/index.js
