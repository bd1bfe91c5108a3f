# Shared by scripts/services/*.sh: where the throwaway services keep their state, and package installs.
STATE=${INITSWEEP_SERVICES_DIR:-/tmp/initsweep-services}
PG_PORT=${INITSWEEP_PG_PORT:-5432}
PG_URL_BASE="postgresql://initsweep:initsweep@127.0.0.1:${PG_PORT}"
mkdir -p "$STATE"

# ensure_packages CMD PKG...: install the Debian packages when CMD is missing (apt-get update once per state dir).
ensure_packages() {
  local cmd=$1; shift
  if [ -x "$cmd" ] || command -v "$cmd" >/dev/null 2>&1; then return 0; fi
  if [ ! -f "$STATE/.apt-updated" ]; then apt-get update -qq && touch "$STATE/.apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
