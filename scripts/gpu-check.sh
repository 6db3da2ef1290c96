#!/usr/bin/env bash
# The real-GPU check of issue 21, for a machine with an NVIDIA GPU (nothing here can run one). Run from the
# repository root after `npm ci && npm run build` where the machine has the modules; without them the Node steps are
# skipped and the raw answers are kept, so they can be read back on another machine. Nothing is downloaded.
#
#   bash scripts/gpu-check.sh            # writes to $OUT (default: a new temp dir) and prints a summary
#
# Steps, each one printed with what it ran and what it got:
#   1. nvidia-smi's raw answers: the inventory query, -L (MIG devices), the metrics query (files in $OUT)
#   2. the inventory, the [gpu] selection and the agent's GPU metrics, read by Outpost's own code (dist/)
#   3. the GPU benchmark: `outpost benchmark run --type gpu` against a devnet on loopback (the CUDA program built with
#      nvcc when the toolkit is there); without the modules, the CUDA program is built and run directly
#   4. a GPU container, when Docker with the NVIDIA Container Toolkit is present: the device by UUID, as the docker
#      backend asks for it (DeviceIDs), then the same without the toolkit's hook, to show the error doctor names
set -u

OUT=${OUT:-$(mktemp -d -t outpost-gpu-check.XXXXXX)}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
SMI=${NVIDIA_SMI:-nvidia-smi}
INVENTORY_QUERY=index,uuid,name,memory.total,compute_cap,driver_version,mig.mode.current
METRICS_QUERY=index,uuid,utilization.gpu,memory.used,temperature.gpu,power.draw
status=0

section() { printf '\n== %s\n' "$*"; }
run() {
  # run <name> <command...>: the command's output in $OUT/<name>.txt, its exit code in $OUT/<name>.rc, both printed
  local name=$1
  shift
  printf '$ %s\n' "$*"
  "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$rc" >"$OUT/$name.rc"
  cat "$OUT/$name.txt"
  printf '(exit %s)\n' "$rc"
  return "$rc"
}
have_node() { command -v node >/dev/null 2>&1 && [ -d node_modules/zod ] && [ -f dist/gpu/inventory.js ]; }

section "1. nvidia-smi, raw"
run smi-version "$SMI" --version || true
run smi-inventory "$SMI" "--query-gpu=$INVENTORY_QUERY" --format=csv,noheader,nounits || status=1
run smi-list "$SMI" -L || status=1
run smi-metrics "$SMI" "--query-gpu=$METRICS_QUERY" --format=csv,noheader,nounits || status=1
FIRST_UUID=$(sed -n 's/^GPU 0: .*(UUID: \(GPU-[0-9a-fA-F-]*\))$/\1/p' "$OUT/smi-list.txt")

section "2. Outpost's inventory, selection and metrics (dist/)"
if have_node; then
  run outpost-inventory node --input-type=module -e "
    const {readGpuInventory, describeInventory} = await import('./dist/gpu/inventory.js')
    const {localGpuUnits} = await import('./dist/gpu/devices.js')
    const {GpuSection} = await import('./dist/core/config/schema.js')
    const inventory = await readGpuInventory(process.env.NVIDIA_SMI ?? 'nvidia-smi')
    console.log(describeInventory(inventory))
    console.log(JSON.stringify(inventory, null, 2))
    for (const mig of [false, true]) console.log('mig =', mig, JSON.stringify(localGpuUnits(inventory, GpuSection.parse({mig})), null, 2))
    if (inventory.state !== 'ready') process.exit(1)
  " || status=1
  run outpost-metrics node --input-type=module -e "
    const {Registry} = await import('prom-client')
    const {watchGpuMetrics} = await import('./dist/agent/gpus.js')
    const {GpuSection} = await import('./dist/core/config/schema.js')
    const registry = new Registry()
    const holders = new Map(process.env.FIRST_UUID ? [[process.env.FIRST_UUID, 'contract:00000000000000000000000000000001']] : [])
    if (!(await watchGpuMetrics(registry, GpuSection.parse({nvidia_smi: process.env.NVIDIA_SMI ?? 'nvidia-smi'}), () => holders))) process.exit(1)
    console.log((await registry.metrics()).split('\n').filter((line) => line.includes('outpost_agent_gpu')).join('\n'))
  " || status=1
  if command -v promtool >/dev/null 2>&1; then
    grep -v '^(exit' "$OUT/outpost-metrics.txt" >"$OUT/outpost-metrics.prom"
    run promtool-check sh -c "promtool check metrics < '$OUT/outpost-metrics.prom'" || status=1
  fi
else
  echo "skipped: node, node_modules or dist/ missing (npm ci && npm run build); the raw answers above are in $OUT"
fi

section "3. GPU benchmark"
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
echo "nvcc: ${NVCC:-not installed (the benchmark reports nvidia-smi only)}"
if have_node && [ -d node_modules/better-sqlite3 ]; then
  CONFIG_DIR=$(mktemp -d -t outpost-gpu-check-config.XXXXXX)
  export OUTPOST_CONFIG_DIR=$CONFIG_DIR
  [ -n "$NVCC" ] && PATH=$(dirname "$NVCC"):$PATH
  node bin/run.js devnet start --port 0 --json --data-dir "$CONFIG_DIR/devnet" >"$OUT/devnet.json" 2>"$OUT/devnet.err" &
  DEVNET=$!
  for _ in $(seq 1 100); do grep -q endpoint "$OUT/devnet.json" 2>/dev/null && break; sleep 0.2; done
  ENDPOINT=$(node -e "console.log(JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8')).endpoint)" "$OUT/devnet.json" 2>/dev/null)
  if [ -n "$ENDPOINT" ]; then
    run outpost-init node bin/run.js init --main-key --endpoint "$ENDPOINT" --json || status=1
    run outpost-register node bin/run.js register --json --name "GPU check" --contact-email ops@gpu-check.example --main-key-file "$CONFIG_DIR/provider-main.key" || status=1
    run outpost-doctor node bin/run.js doctor --json || true
    run outpost-benchmark node bin/run.js benchmark run --type gpu --json || status=1
  else
    echo "the devnet did not start:"
    cat "$OUT/devnet.err"
    status=1
  fi
  kill "$DEVNET" 2>/dev/null
  wait "$DEVNET" 2>/dev/null
  rm -rf "$CONFIG_DIR"
elif [ -n "$NVCC" ]; then
  run nvcc-build "$NVCC" -O3 -arch=native -o "$OUT/gpu-bench" templates/bench/gpu-bench.cu || run nvcc-build-default "$NVCC" -O3 -o "$OUT/gpu-bench" templates/bench/gpu-bench.cu || status=1
  if [ -x "$OUT/gpu-bench" ]; then
    sed -n 's/^GPU [0-9]*: .*(UUID: \(GPU-[0-9a-fA-F-]*\))$/\1/p' "$OUT/smi-list.txt" | while read -r uuid; do
      run "gpu-bench-$uuid" env CUDA_VISIBLE_DEVICES="$uuid" "$OUT/gpu-bench" 1024 4096 10
    done
  fi
else
  echo "skipped: neither the built CLI with its modules nor nvcc"
fi

section "4. A GPU container"
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  run docker-runtimes docker info --format '{{json .Runtimes}}'
  command -v nvidia-container-runtime-hook && echo "nvidia-container-runtime-hook is installed" || echo "nvidia-container-runtime-hook is NOT installed: expect the error doctor names"
  IMAGE=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep -v '<none>' | head -n 1)
  if [ -z "$IMAGE" ] && command -v busybox >/dev/null 2>&1; then
    ROOTFS=$(mktemp -d)
    mkdir -p "$ROOTFS/bin"
    cp "$(command -v busybox)" "$ROOTFS/bin/busybox"
    ln -s busybox "$ROOTFS/bin/sh"
    tar -C "$ROOTFS" -c . | docker import - outpost-gpu-check/busybox:local >/dev/null && IMAGE=outpost-gpu-check/busybox:local
    rm -rf "$ROOTFS"
  fi
  if [ -n "$IMAGE" ] && [ -n "$FIRST_UUID" ]; then
    # --gpus device=<uuid> is what the docker backend's DeviceRequests ask (DeviceIDs, never a count); the toolkit puts
    # nvidia-smi into the container with the utility capability.
    run docker-gpu docker run --rm --gpus "\"device=$FIRST_UUID\"" -e NVIDIA_DRIVER_CAPABILITIES=compute,utility "$IMAGE" nvidia-smi -L || status=1
  else
    echo "skipped: no local image to run (nothing can be pulled) or no GPU UUID"
  fi
else
  echo "skipped: no Docker engine answers here"
fi

section "Summary"
echo "outputs in $OUT"
for rc in "$OUT"/*.rc; do printf '%-28s exit %s\n' "$(basename "$rc" .rc)" "$(cat "$rc")"; done
exit "$status"
