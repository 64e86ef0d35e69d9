#!/usr/bin/env bash
# benches/peers/ab-w1.sh: two haul builds interleaved run by run on case w1 (1,000 x 64 KiB
# across the WAN: 40 ms RTT, 1 Gbit/s, think 10 ms, 2% stragglers 30x slower), `haul get` with
# no flags into a never-used directory each run, every run verified by its manifest.
# STRAGGLERS=0 gives w1n. OLD and NEW are the two haul binaries; RUNS runs each.
# Needs the standard fixtures (benches/peers.sh makes them) and a release haul-wan.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OLD=${OLD:?the haul binary before the change} NEW=${NEW:-$ROOT/target/release/haul}
RUNS=${RUNS:-5} STRAGGLERS=${STRAGGLERS:-0.02}
FX_ROOT=${FX_ROOT:-/tmp/haul-bench-fixtures}
"$HERE/make-fixtures.sh" --standard "$FX_ROOT" >/dev/null
"$HERE/nginx-up.sh" "$FX_ROOT" 18080 >/dev/null
out=$(mktemp -d /tmp/abw1.XXXX)
"$ROOT/target/release/examples/haul-wan" --upstream 127.0.0.1:18080 --rtt-ms 40 --think-median-ms 10 \
  --rate-mbit 1000 --stragglers "$STRAGGLERS" > "$out/wan" 2>&1 &
WAN_PID=$!
trap 'kill $WAN_PID 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do grep -q LISTENING "$out/wan" && break; sleep 0.05; done
W=$(awk '/LISTENING/ {print $2}' "$out/wan")
sed -n 1,1000p "$FX_ROOT/s64k.sha256" > "$out/manifest"
mkdir "$out/trash"
now() { date +%s.%N; }
for run in $(seq "$RUNS"); do
  for v in OLD NEW; do
    dest="$out/$v-$run"
    sync
    t0=$(now); "${!v}" get -q -o "$dest" "http://$W/s64k/obj-{000000..000999}.bin"; t1=$(now)
    (cd "$dest" && sha256sum -c --quiet "$out/manifest") || { echo "VERIFY FAILED: $v run $run" >&2; exit 1; }
    mv "$dest" "$out/trash/"   # removed at exit: see run_case in benches/peers.sh
    printf '%s run%s %.3f s\n' "$v" "$run" "$(echo "$t1 - $t0" | bc)"
  done
done
