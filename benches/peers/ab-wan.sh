#!/usr/bin/env bash
# benches/peers/ab-wan.sh: two haul builds interleaved run by run on a WAN case of peers.sh,
# `haul get` with no flags into a never-used directory each run (moved aside, removed at exit:
# see run_case in benches/peers.sh), verified against the fixture's manifest (w2: compared
# with the fixture on the first run of each build, by size on the others).
#   CASE=w1  (default) 1,000 x 64 KiB, 40 ms RTT, 1 Gbit/s, think 10 ms, 2% stragglers 30x slower
#   CASE=w1n the same without stragglers
#   CASE=w2  one 1 GiB object, 2 Gbit/s, the rest as w1
# OLD and NEW are the two haul binaries; RUNS runs each. Needs a release haul-wan.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OLD=${OLD:?the haul binary before the change} NEW=${NEW:-$ROOT/target/release/haul}
RUNS=${RUNS:-5} CASE=${CASE:-w1}
FX_ROOT=${FX_ROOT:-/tmp/haul-bench-fixtures}
case $CASE in
  w1) RATE=1000 STRAGGLERS=0.02 ;;
  w1n) RATE=1000 STRAGGLERS=0 ;;
  w2) RATE=2000 STRAGGLERS=0.02 ;;
  *) echo "CASE is w1, w1n or w2" >&2; exit 2 ;;
esac
"$HERE/make-fixtures.sh" --standard "$FX_ROOT" >/dev/null
"$HERE/nginx-up.sh" "$FX_ROOT" 18080 >/dev/null
out=$(mktemp -d /tmp/abwan.XXXX)
. "$HERE/wan-up.sh"
wan_start "$out" "$ROOT" 18080 --rate-mbit "$RATE" --stragglers "$STRAGGLERS"
trap 'kill $WAN_PID 2>/dev/null || true; rm -rf "$out"' EXIT
mkdir "$out/trash"
if [[ $CASE == w2 ]]; then
  BIG=$(cd "$FX_ROOT/big" && ls | head -1)
  SOURCE="http://$W/big/$BIG" SIZE=$(stat -c %s "$FX_ROOT/big/$BIG")
else
  sed -n 1,1000p "$FX_ROOT/s64k.sha256" > "$out/manifest"
  SOURCE="http://$W/s64k/obj-{000000..000999}.bin"
fi
now() { date +%s.%N; }
for run in $(seq "$RUNS"); do
  for v in OLD NEW; do
    dest="$out/$v-$run"
    sync
    t0=$(now); "${!v}" get -q -o "$dest" "$SOURCE"; t1=$(now)
    if [[ $CASE != w2 ]]; then
      (cd "$dest" && sha256sum -c --quiet "$out/manifest") || { echo "VERIFY FAILED: $v run $run" >&2; exit 1; }
    elif [[ $run == 1 ]]; then
      cmp -s "$dest/$BIG" "$FX_ROOT/big/$BIG" || { echo "VERIFY FAILED: $v run $run" >&2; exit 1; }
    elif [[ $(stat -c %s "$dest/$BIG") != "$SIZE" ]]; then
      echo "VERIFY FAILED: $v run $run: size" >&2; exit 1
    fi
    mv "$dest" "$out/trash/"
    printf '%s run%s %.3f s\n' "$v" "$run" "$(echo "$t1 - $t0" | bc)"
  done
done
