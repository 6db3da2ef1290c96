#!/usr/bin/env bash
# Outpost installer: curl -fsSL <url>/install.sh | bash
#   --unattended        never ask; install Debian's nodejs when Node is missing (CI, cloud-init)
#   --prefix DIR        npm global prefix (default: npm's own)
#   --user NAME         system user the agent runs as (default: outpost)
#   --no-system-user    skip the system user and its directories (containers, tests)
# Environment: OUTPOST_PACKAGE (a tarball path or package spec; default outpost-cli from the registry),
# OUTPOST_HOME (the agent's home and config directory: keys, outpost.toml, state; default /var/lib/outpost).
# Safe to run again: every step checks before it acts.
set -euo pipefail

unattended=false
prefix=""
service_user="${OUTPOST_USER:-outpost}"
system_user=true
package="${OUTPOST_PACKAGE:-outpost-cli}"
home_dir="${OUTPOST_HOME:-/var/lib/outpost}"

say() { printf '%s\n' "$*"; }
fail() { printf 'outpost install: %s\n' "$1" >&2; [ -n "${2:-}" ] && printf '  → %s\n' "$2" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --unattended) unattended=true ;;
    --prefix) [ $# -ge 2 ] || fail "--prefix needs a directory"; prefix="$2"; shift ;;
    --user) [ $# -ge 2 ] || fail "--user needs a name"; service_user="$2"; shift ;;
    --no-system-user) system_user=false ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) fail "unknown option $1" "see --help" ;;
  esac
  shift
done
[ -t 0 ] || unattended=true

kernel="${OUTPOST_KERNEL:-$(uname -s)}"
os_release="${OUTPOST_OS_RELEASE:-/etc/os-release}"
[ "$kernel" = "Linux" ] || fail "unsupported OS: $kernel" "the Outpost agent runs on Linux (Debian, Ubuntu or another distribution with Node.js 20+)"
os_id=unknown; os_like=""
if [ -r "$os_release" ]; then
  # The host's os-release (or the test's stand-in) is read in a subshell; there is nothing here to follow.
  # shellcheck source=/dev/null
  os_id=$(. "$os_release" && printf '%s' "${ID:-unknown}")
  # shellcheck source=/dev/null
  os_like=$(. "$os_release" && printf '%s' "${ID_LIKE:-}")
fi
debian_like=false
case " $os_id $os_like " in *" debian "*|*" ubuntu "*) debian_like=true ;; esac

node_major() { command -v node >/dev/null 2>&1 && node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(node_major)" -lt 20 ]; then
  if ! $debian_like; then
    fail "Node.js 20 or newer is required (found: $(command -v node >/dev/null && node --version || echo none)) on $os_id" "install Node.js 20+ with your distribution's packages or nvm, then run this again"
  fi
  if ! $unattended; then
    printf 'Node.js 20+ is missing. Install Debian'"'"'s nodejs and npm with apt-get? [y/N] '
    read -r answer
    case "$answer" in y|Y|yes) ;; *) fail "Node.js 20+ is required" "install it, then run this again" ;; esac
  fi
  [ "$(id -u)" -eq 0 ] || fail "installing nodejs needs root" "run with sudo, or install Node.js 20+ yourself"
  apt-get update -qq && apt-get install -y -qq nodejs npm
  [ "$(node_major)" -ge 20 ] || fail "this distribution's nodejs is $(node --version), older than 20" "install Node.js 20+ from NodeSource or nvm, then run this again"
fi
say "✓ Node.js $(node --version)"

npm_args=(install --global --no-audit --no-fund)
if [ -n "$prefix" ]; then npm_args+=(--prefix "$prefix"); bin_dir="$prefix/bin"; else bin_dir="$(npm prefix --global)/bin"; fi
if [ -f "$package" ]; then
  wanted=$(tar -xOzf "$package" package/package.json | node -p 'JSON.parse(require("fs").readFileSync(0, "utf8")).version')
else
  wanted=$(npm view "$package" version 2>/dev/null || true)
fi
installed=$("$bin_dir/outpost" --version 2>/dev/null | sed -n 's|^outpost-cli/\([^ ]*\) .*|\1|p' || true)
if [ -n "$wanted" ] && [ "$installed" = "$wanted" ]; then
  say "✓ outpost-cli $installed is already installed in $bin_dir"
else
  say "… installing $package"
  npm "${npm_args[@]}" "$package" >/dev/null
  "$bin_dir/outpost" --version >/dev/null || fail "the installed outpost does not start" "see the npm output above"
  say "✓ $("$bin_dir/outpost" --version) in $bin_dir"
fi

if $system_user; then
  [ "$(id -u)" -eq 0 ] || fail "creating the $service_user user needs root" "run with sudo, or pass --no-system-user"
  if id "$service_user" >/dev/null 2>&1; then
    say "✓ user $service_user exists"
  else
    useradd --system --home-dir "$home_dir" --shell /usr/sbin/nologin --user-group "$service_user"
    say "✓ created system user $service_user"
  fi
  install -d -m 0750 -o "$service_user" -g "$service_user" "$home_dir"
  say "✓ $home_dir belongs to $service_user"
fi

cat <<NEXT

Next steps:
  export OUTPOST_CONFIG_DIR=$home_dir
  sudo -u $service_user -E outpost init --endpoint <marketplace URL>
  sudo -u $service_user -E outpost register --main-key-file <your provider main key>   (add [provider] and [[offerings]] first)
  sudo -E outpost service install                                                      (runs outpost run as $service_user)
NEXT
