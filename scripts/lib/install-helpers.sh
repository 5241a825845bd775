# Helpers the install scripts share (sourced, not run): root or sudo, quiet commands, Node.js from Debian,
# and pinned npm packages installed only when their lock file changed. The sourcing script defines log().

SUDO=""
as_root() {
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "need root or sudo to run: $*"; exit 1; }
    SUDO="sudo"
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive "$@"
}

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq >/dev/null; apt_updated=1; fi
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

# Node.js and npm from Debian, if absent.
ensure_node() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    log "installing nodejs and npm (Debian)"
    apt_update_once
    quiet as_root apt-get install -y -qq --no-install-recommends nodejs npm
  fi
}

# npm_ci_if_changed DIR MARKER_PACKAGE: `npm ci` in DIR when its package-lock.json changed since the last
# install (a stamp of its hash) or MARKER_PACKAGE is missing from node_modules.
npm_ci_if_changed() {
  local dir="$1" marker="$2" lock_sum stamp
  lock_sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  stamp="$dir/node_modules/.stepserve-stamp"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ] || [ ! -d "$dir/node_modules/$marker" ]; then
    log "installing npm packages into ${dir#"$ROOT"/}/node_modules"
    quiet npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
    echo "$lock_sum" >"$stamp"
  fi
}
