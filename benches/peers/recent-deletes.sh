#!/usr/bin/env bash
# benches/peers/recent-deletes.sh: what a run right after removing many files pays on this
# VM's ext4 (no journal: new files step over the inodes deleted in the last seconds). Case
# w1's WAN and list (1,000 x 64 KiB, 40 ms RTT, 1 Gbit/s, think 10 ms, 2% stragglers); HAUL
# (default the release build) runs `get` four times right after 2,000 files were removed and
# four times 12 s after the last removal, alternating; /usr/bin/time gives each run's wall
# and system time. Needs the standard fixtures and a release haul-wan (benches/peers.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
HAUL=${HAUL:-$ROOT/target/release/haul}
FX_ROOT=${FX_ROOT:-/tmp/haul-bench-fixtures}
"$HERE/make-fixtures.sh" --standard "$FX_ROOT" >/dev/null
"$HERE/nginx-up.sh" "$FX_ROOT" 18080 >/dev/null
out=$(mktemp -d /tmp/recent-deletes.XXXX)
. "$HERE/wan-up.sh"
wan_start "$out" "$ROOT" 18080 --rate-mbit 1000 --stragglers 0.02
trap 'kill $WAN_PID 2>/dev/null || true; rm -rf "$out"' EXIT
mkdir "$out/trash"
for i in 1 2 3 4; do
  cp -r "$FX_ROOT/s64k" "$out/junk"; sync; rm -rf "$out/junk"; sync
  /usr/bin/time -f "after removing 2,000 files, run $i: %e s, %S s system" \
    "$HAUL" get -q -o "$out/a$i" "http://$W/s64k/obj-{000000..000999}.bin"
  mv "$out/a$i" "$out/trash/"; sync; sleep 12
  /usr/bin/time -f "12 s after the last removal, run $i: %e s, %S s system" \
    "$HAUL" get -q -o "$out/b$i" "http://$W/s64k/obj-{000000..000999}.bin"
  mv "$out/b$i" "$out/trash/"; sync; sleep 12
done
