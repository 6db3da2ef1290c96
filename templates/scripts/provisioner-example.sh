#!/usr/bin/env bash
# Example [provisioner.script] command for outpost. Outpost runs `<this script> <action>` with one JSON request on
# stdin and reads one JSON answer from stdout; anything for a human goes to stderr (it is shown when the script fails).
# A failure exits non-zero, optionally printing {"error": "...", "retry_possible": false}.
#
#   action     stdin                                        stdout
#   provision  {"instance_name", "contract": {...}}         {"external_id", "ip_address", "ssh_port", "credentials"?}
#   find       {"instance_name", "contract_id"}             {"instance": {...as provision} | null}
#   terminate  {"external_id"}                              {"terminated": true}   (also when it is already gone)
#   health     {"external_id"}                              {"status": "healthy" | "unhealthy" | "unknown"}
#   list       {}                                           {"instances": [{"external_id", "name", "contract_id"?}]}
#   capacity   {}                                           {"capacity": {"cpu_cores", "memory_mb", "storage_gb", "gpu_count"} | null}
#   verify     {}                                           {"checks": [{"name", "ok", "message", "remedy"?}]}
#
# provision must be idempotent: when a machine named instance_name exists, answer it instead of making another.
# When provision fails part-way it must remove what it made. This example keeps its "machines" as files; replace the
# marked lines with calls to your own infrastructure. It needs jq.
#
# The request comes from the agent, but its ids come from the marketplace: an id becomes a file name only after it
# matches the one pattern this script makes (outpost-<32 hex digits>), so "../x" can't reach outside STATE_DIR.
set -euo pipefail
# The state files hold renters' passwords: only this user may read them (and the state dir is made 0700).
umask 077

STATE_DIR="${EXAMPLE_STATE_DIR:-/var/lib/outpost-example}"
mkdir -p "$STATE_DIR"
request="$(cat)"
field() { jq -r "$1 // empty" <<<"$request"; }

# Exits with a final failure unless $1 is an id this script makes.
require_id() {
  if [[ ! "$1" =~ ^outpost-[0-9a-f]{32}$ ]]; then
    echo "refusing the id ${1@Q}: the ids this script makes are outpost-<32 hex digits>" >&2
    echo '{"error": "not an instance id of this backend", "retry_possible": false}'
    exit 65
  fi
}

case "${1:-}" in
  provision)
    name="$(field .instance_name)"
    require_id "$name"
    if [[ -f "$STATE_DIR/$name.json" ]]; then cat "$STATE_DIR/$name.json"; exit 0; fi
    cores="$(field .contract.cpu_cores)"; memory="$(field .contract.memory_mb)"; ssh_key="$(field .contract.ssh_pubkey)"
    echo "making $name with $cores cores and $memory MB for key ${ssh_key:0:20}..." >&2
    password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    # --- replace: create the machine, install ssh_key, set the password, find its address ---
    address="192.0.2.10"
    jq -n --arg id "$name" --arg ip "$address" --arg pw "$password" \
      '{external_id: $id, ip_address: $ip, ssh_port: 22, credentials: {username: "root", password: $pw}}' \
      | tee "$STATE_DIR/$name.json"
    ;;
  find)
    name="$(field .instance_name)"
    require_id "$name"
    if [[ -f "$STATE_DIR/$name.json" ]]; then jq '{instance: del(.credentials)}' "$STATE_DIR/$name.json"
    else echo '{"instance": null}'; fi
    ;;
  terminate)
    id="$(field .external_id)"
    require_id "$id"
    # --- replace: destroy the machine ---
    rm -f "$STATE_DIR/$id.json"
    echo '{"terminated": true}'
    ;;
  health)
    id="$(field .external_id)"
    require_id "$id"
    if [[ -f "$STATE_DIR/$id.json" ]]; then echo '{"status": "healthy"}'; else echo '{"status": "unhealthy"}'; fi
    ;;
  list)
    find "$STATE_DIR" -name 'outpost-*.json' -printf '%f\n' | sed 's/\.json$//' \
      | jq -R '{external_id: ., name: ., contract_id: (capture("^outpost-(?<id>[0-9a-f]{32})$").id // null)} | with_entries(select(.value != null))' \
      | jq -s '{instances: .}'
    ;;
  capacity)
    echo '{"capacity": null}'
    ;;
  verify)
    if [[ -w "$STATE_DIR" ]]; then ok=true; else ok=false; fi
    jq -n --argjson ok "$ok" --arg dir "$STATE_DIR" '{checks: [{name: "state dir", ok: $ok, message: "\($dir) is writable"}]}'
    ;;
  *)
    echo "unknown action: ${1:-}" >&2
    exit 64
    ;;
esac
