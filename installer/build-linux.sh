#!/usr/bin/env bash
# Build the frozen one-folder bundle on Linux and smoke-test it, as CI does (.ci/run calls this).
#
#   bash installer/build-linux.sh            # builds dist/bubble/ with .venv, then tests it
#   DIST=/tmp/b/dist WORK=/tmp/b/work bash installer/build-linux.sh   # build elsewhere while iterating
#   SKIP_BUILD=1 bash installer/build-linux.sh                         # only re-run the smoke tests
#
# The smoke tests: `bubble --smoke-test` (offscreen: real main window, a tiny model streams an answer,
# a file is indexed and searched, a ChatGLM-style model loads its own code and answers, a GGUF
# opens through llama.cpp in its child process and answers), then `bubble-cli --version` and `kb create/add/search`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DIST=${DIST:-dist}
WORK=${WORK:-build/pyinstaller}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false QT_QPA_PLATFORM=offscreen

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "== PyInstaller: bubble.spec -> $DIST/bubble"
  # PyInstaller comes with the "build" extra; the project itself is already installed by the README's set-up
  "$PY" -m PyInstaller --version > /dev/null 2>&1 || "$PY" -m pip install -q -e ".[build]"
  t0=$(date +%s)
  # --clean: no analysis cache from an earlier run (a stale cache can hide a missing module)
  # (torch's deprecated submodules warn when the hook imports them all: keep the CI log readable)
  PYTHONWARNINGS=ignore::DeprecationWarning \
    "$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$DIST" --workpath "$WORK" bubble.spec
  echo "build: $(( $(date +%s) - t0 )) s, bundle: $(du -sh "$DIST/bubble" | cut -f1)"
  du -sh "$DIST"/bubble/_internal/* | sort -h | tail -8
fi

app="$DIST/bubble/bubble"
cli="$DIST/bubble/bubble-cli"
[ -x "$app" ] && [ -x "$cli" ] || { echo "no bundle at $DIST/bubble"; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "== tiny models for the smoke test (a llama, a ChatGLM-style one that ships its own code, a GGUF)"
"$PY" -c "import sys; from pathlib import Path; from tests.fixtures.tiny_models import build_tiny_model, build_tiny_gguf; \
from tests.fixtures.chatglm_like.build import build_chatglm_like; \
build_tiny_model(Path(sys.argv[1]), 'llama'); build_chatglm_like(Path(sys.argv[2]), 'roles'); \
build_tiny_gguf(Path(sys.argv[3]))" \
  "$scratch/tiny-llama" "$scratch/tiny-chatglm" "$scratch/tiny-llama.gguf"

echo "== bubble --smoke-test (frozen)"
t0=$(date +%s)
timeout 600 "$app" --smoke-test --model "$scratch/tiny-llama" --remote-code-model "$scratch/tiny-chatglm" \
  --gguf "$scratch/tiny-llama.gguf" \
  --report "$scratch/smoke.json" > /dev/null \
  || { cat "$scratch/smoke.json" 2>/dev/null; echo "frozen smoke test FAILED"; exit 1; }
"$PY" -c "import json, sys; r = json.load(open(sys.argv[1])); \
print('smoke ok in', r['total_s'], 's:', ', '.join(f'{k} {v[\"s\"]}s' for k, v in r['stages'].items()))" "$scratch/smoke.json"
echo "(wall $(( $(date +%s) - t0 )) s)"

echo "== bubble-cli (frozen): --version, kb create/add/search"
"$cli" --version
home="$scratch/cli-home"
mkdir -p "$scratch/docs"
printf 'The smoke bubble is teal and floats above the lighthouse at Port Quillan.\n' > "$scratch/docs/notes.md"
"$cli" --home "$home" kb create smoke
"$cli" --home "$home" kb add smoke "$scratch/docs"
"$cli" --home "$home" kb search smoke "Which colour is the bubble above the lighthouse?" | tee "$scratch/hits.txt"
grep -q "Port Quillan" "$scratch/hits.txt" || { echo "bubble-cli kb search did not find the note"; exit 1; }
echo "frozen build OK"
