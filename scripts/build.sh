#!/usr/bin/env bash
# wrangler's [build] command: builds the worker into build/ with worker-build, using the tools
# scripts/setup installed (worker-build would otherwise download them from GitHub).
# Skips the build when build/ is newer than every input, so each `wrangler dev` start in the
# tests costs nothing after the first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

output=build/index.js
if [ -f "$output" ] && [ -z "$(find src Cargo.toml Cargo.lock -newer "$output" -print -quit)" ]; then
  exit 0
fi

for tool in "$(worker_build_bin)" "$(wasm_bindgen_bin)" node_modules/.bin/wasm-opt node_modules/.bin/esbuild; do
  if [ ! -x "$tool" ]; then
    echo "build: $tool is missing; run scripts/setup first" >&2
    exit 1
  fi
done

export WASM_BINDGEN_BIN WASM_OPT_BIN ESBUILD_BIN
WASM_BINDGEN_BIN="$(wasm_bindgen_bin)"
WASM_OPT_BIN="$REPO_ROOT/node_modules/.bin/wasm-opt"
ESBUILD_BIN="$REPO_ROOT/node_modules/.bin/esbuild"
"$(worker_build_bin)" --release

# worker-build keeps the wasm names section (it passes --debuginfo to wasm-opt); dropping it
# saves about 50 KB gzipped, and one more -Oz pass without the names another ~2.5 KB. Panic messages stay; stack frames lose their names. The features are
# worker-build's own explicit list, so that no newer encoding is written than workerd reads.
features=()
for feature in mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue \
  reference-types exception-handling; do
  features+=("--enable-$feature")
done
"$WASM_OPT_BIN" "${features[@]}" -Oz --strip-debug build/index_bg.wasm -o build/index_bg.wasm
touch "$output"

