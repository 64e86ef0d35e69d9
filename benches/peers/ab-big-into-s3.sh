#!/usr/bin/env bash
# benches/peers/ab-big-into-s3.sh: one 1 GiB object across case w2's WAN (40 ms RTT, 2 Gbit/s,
# think 10 ms, 2% stragglers) into SeaweedFS on loopback with `haul get -o s3://`, two builds
# interleaved run by run (OLD, NEW), each run into a fresh prefix, verified by the object's
# size and removed after. Needs what benches/peers.sh --only w2 leaves (fixture, tools).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/peers-env.sh"
OLD=${OLD:?the haul binary before the change} NEW=${NEW:-$ROOT/target/release/haul}
RUNS=${RUNS:-2}
FX_ROOT=${FX_ROOT:-/tmp/haul-bench-fixtures}
BIG=$(cd "$FX_ROOT/big" && ls | head -1)
SIZE=$(stat -c %s "$FX_ROOT/big/$BIG")
"$HERE/nginx-up.sh" "$FX_ROOT" 18080 >/dev/null
"$HERE/s3-up.sh" 18333 >/dev/null
. /tmp/s3-18333/env.sh
out=$(mktemp -d /tmp/abbig.XXXX)
. "$HERE/wan-up.sh"
wan_start "$out" "$ROOT" 18080 --rate-mbit 2000 --stragglers 0.02
trap 'kill $WAN_PID 2>/dev/null || true; rm -rf "$out"' EXIT
now() { date +%s.%N; }
for run in $(seq "$RUNS"); do
  for v in OLD NEW; do
    prefix="abbig-$v-$run-$$"
    t0=$(now); "${!v}" get -q -o "s3://bench/$prefix/" "http://$W/big/$BIG"; t1=$(now)
    got=$("$S5CMD" ls "s3://bench/$prefix/*" | awk '{n++; b+=$3} END {printf "%d:%d", n, b}')
    "$S5CMD" rm "s3://bench/$prefix/*" >/dev/null
    [[ $got == "1:$SIZE" ]] || { echo "VERIFY FAILED: $v: $got" >&2; exit 1; }
    printf '%s run%s %.3f s\n' "$v" "$run" "$(echo "$t1 - $t0" | bc)"
  done
done
