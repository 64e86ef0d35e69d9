#!/usr/bin/env bash
# benches/peers/sidecar-cost.sh: what rewriting a split tail's sidecar costs. Runs case w4's
# job (200 x 64 KiB and one 48 MiB object across the WAN with stalls) into fresh directories
# under strace, and sums the system calls on `.meta` files: how many rewrites, and the time
# in them (strace inflates each call: an upper bound).
# Needs what benches/peers.sh --only w4 leaves: the fixture and nginx on 18080.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HAUL=${HAUL_BIN:-$ROOT/target/release/haul}
FX=${FX_ROOT:-/tmp/haul-bench-fixtures}/tail
RUNS=${RUNS:-3}
out=$(mktemp -d /tmp/sidecar.XXXX)
. "$(dirname "$0")/w4-wan.sh"
w4_up "$out" "$ROOT" "$FX"
trap 'kill $WAN_PID 2>/dev/null || true; rm -rf "$out"' EXIT
for i in $(seq "$RUNS"); do
  strace -f -T -y -e trace=openat,write,close -o "$out/strace" "$HAUL" get -q --list "$out/list" -o "$out/run-$i"
  rm -rf "$out/run-$i"
  python3 - "$out/strace" "$i" <<'EOF'
import re, sys
rewrites, calls, seconds = 0, 0, 0.0
for line in open(sys.argv[1]):
    m = re.search(r"<([0-9.]+)>\s*$", line)
    if ".meta" not in line or not m:
        continue
    calls += 1
    seconds += float(m.group(1))
    rewrites += "openat(" in line and "O_TRUNC" in line
print(f"run {sys.argv[2]}: {rewrites} sidecar rewrites, {calls} calls, {seconds * 1000:.2f} ms in them")
EOF
done
