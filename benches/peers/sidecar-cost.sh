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
"$ROOT/target/release/haul-wan" --upstream 127.0.0.1:18080 --rtt-ms 40 --think-median-ms 10 \
  --rate-mbit 1000 --stragglers 0 --stalls-per-mib 0.2 --stall-ms 200 > "$out/wan" 2>&1 &
wan=$!
trap 'kill $wan 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do grep -q LISTENING "$out/wan" && break; sleep 0.05; done
W=$(awk '/LISTENING/ {print $2}' "$out/wan")
(cd "$FX" && ls | grep -v -e large -e sha256 | sed -n 1,150p; echo large.bin; ls | grep -v -e large -e sha256 | sed -n '151,$p') |
  sed "s#^#http://$W/tail/#" > "$out/list"
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
