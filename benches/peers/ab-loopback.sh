#!/usr/bin/env bash
# benches/peers/ab-loopback.sh: two haul builds interleaved run by run on peers.sh's loopback
# cases (nginx and SeaweedFS on 127.0.0.1, no WAN), each run into a never-used directory
# (moved aside, removed at exit: see run_case in benches/peers.sh):
#   a   haul get --workers-per-target 16, 2,000 x 64 KiB (verified against the manifest
#       on the first run of each build)
#   a0  the same with no flags
#   b   haul get --stdout > /dev/null, the 1 GiB object
#   b2  haul get (no flags) of the 1 GiB object into a file (checked by size)
#   c   haul s3 get --workers-per-target 16, 1,000 x 256 KiB from SeaweedFS (the files'
#       count and bytes checked on the first run)
#   cc  haul s3 cat --workers 16 of the same keys > /dev/null
# OLD and NEW are the two haul binaries; RUNS runs each; CASES picks (default all).
# Needs what benches/peers.sh --only a --only b --only c leaves: the fixtures, and the
# objects in s3://bench/s256k/ of the SeaweedFS on 18333.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OLD=${OLD:?the haul binary before the change} NEW=${NEW:-$ROOT/target/release/haul}
RUNS=${RUNS:-5} CASES=${CASES:-a a0 b b2 c cc}
FX_ROOT=${FX_ROOT:-/tmp/haul-bench-fixtures}
"$HERE/nginx-up.sh" "$FX_ROOT" 18080 >/dev/null
"$HERE/s3-up.sh" 18333 >/dev/null
. /tmp/s3-18333/env.sh
B=http://127.0.0.1:18080
BIG=$(cd "$FX_ROOT/big" && ls | head -1)
SIZE=$(stat -c %s "$FX_ROOT/big/$BIG")
KEYS=()
for f in $(cd "$FX_ROOT/s256k" && ls); do KEYS+=("s3://bench/s256k/$f"); done
out=$(mktemp -d /tmp/abloop.XXXX)
mkdir "$out/trash"
trap 'rm -rf "$out"' EXIT
now() { date +%s.%N; }
for run in $(seq "$RUNS"); do
  for c in $CASES; do
    for v in OLD NEW; do
      bin=${!v} dest="$out/$c-$v-$run"
      sync
      t0=$(now)
      case $c in
        a) "$bin" get -q -o "$dest" --workers-per-target 16 "$B/s64k/obj-{000000..001999}.bin" ;;
        a0) "$bin" get -q -o "$dest" "$B/s64k/obj-{000000..001999}.bin" ;;
        b) "$bin" get -q --stdout "$B/big/$BIG" > /dev/null ;;
        b2) "$bin" get -q -o "$dest" "$B/big/$BIG" ;;
        c) "$bin" s3 get -q --workers-per-target 16 -o "$dest" s3://bench/s256k/ ;;
        cc) "$bin" s3 cat --workers 16 "${KEYS[@]}" > /dev/null ;;
      esac
      t1=$(now)
      if ((run == 1)); then
        case $c in
          a | a0) (cd "$dest" && sha256sum -c --quiet "$FX_ROOT/s64k.sha256") ;;
          # Older builds land the keys under the prefix's last segment: count and bytes.
          c) [[ $(find "$dest" -type f -printf '%s\n' | awk '{n++; b+=$1} END {print n ":" b}') == "1000:$((1000 * 262144))" ]] ;;
        esac || { echo "VERIFY FAILED: $c $v" >&2; exit 1; }
      fi
      if [[ $c == b2 && $(stat -c %s "$dest/$BIG") != "$SIZE" ]]; then
        echo "VERIFY FAILED: $c $v run $run: size" >&2; exit 1
      fi
      if [[ -e $dest ]]; then mv "$dest" "$out/trash/"; fi
      printf '%s %s run%s %.3f s\n' "$v" "$c" "$run" "$(echo "$t1 - $t0" | bc)"
    done
  done
done
