#!/usr/bin/env bash
# benches/peers/ab-tail.sh: the fetcher's and the S3 sink's tail split, builds interleaved run
# by run on case w4's fixture and WAN (200 x 64 KiB and one 48 MiB object as the 151st, 40 ms
# RTT, 1 Gbit/s, think 10 ms, loss-like stalls 0.2 a MiB of 200 ms):
#   cat:  haul cat --list LIST > one file (the fetcher), verified by its size;
#   sink: haul get --list LIST -o s3://bench/RUN/ into SeaweedFS on loopback (only the source
#         is across the WAN), verified by the objects' count and bytes, removed after.
# Needs what benches/peers.sh --only w4 leaves: the fixture in $FX_ROOT/tail, and the tools
# (nginx-up.sh, s3-up.sh, a release haul-wan). OLD and NEW are the two haul binaries.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$HERE/peers-env.sh"
OLD=${OLD:?the haul binary before the change} NEW=${NEW:-$ROOT/target/release/haul}
RUNS=${RUNS:-5}
FX_ROOT=${FX_ROOT:-/tmp/haul-bench-fixtures}
TAIL="$FX_ROOT/tail"
[[ -f "$TAIL/tail.sha256" ]] || { echo "no fixture: run benches/peers.sh --only w4 first" >&2; exit 1; }
"$HERE/nginx-up.sh" "$FX_ROOT" 18080 >/dev/null
"$HERE/s3-up.sh" 18333 >/dev/null
. /tmp/s3-18333/env.sh
out=$(mktemp -d /tmp/abtail.XXXX)
. "$HERE/w4-wan.sh"
w4_up "$out" "$ROOT" "$TAIL"
trap 'kill $WAN_PID 2>/dev/null || true; rm -rf "$out"' EXIT
LIST="$out/list"
BYTES=$((200 * 65536 + (48 << 20)))
now() { date +%s.%N; }
for run in $(seq "$RUNS"); do
  for v in OLD NEW; do
    bin=${!v}
    t0=$(now); "$bin" cat -q --list "$LIST" > "$out/cat.bin"; t1=$(now)
    got=$(stat -c %s "$out/cat.bin"); rm -f "$out/cat.bin"
    [[ $got == "$BYTES" ]] || { echo "VERIFY FAILED: $v cat: $got bytes" >&2; exit 1; }
    printf '%s cat  run%s %.3f s\n' "$v" "$run" "$(echo "$t1 - $t0" | bc)"
    prefix="abtail-$v-$run-$$"
    t0=$(now); "$bin" get -q --list "$LIST" -o "s3://bench/$prefix/"; t1=$(now)
    got=$("$S5CMD" ls "s3://bench/$prefix/*" | awk '{n++; b+=$3} END {printf "%d:%d", n, b}')
    "$S5CMD" --numworkers 16 rm "s3://bench/$prefix/*" >/dev/null
    [[ $got == "201:$BYTES" ]] || { echo "VERIFY FAILED: $v sink: $got" >&2; exit 1; }
    printf '%s sink run%s %.3f s\n' "$v" "$run" "$(echo "$t1 - $t0" | bc)"
  done
done
