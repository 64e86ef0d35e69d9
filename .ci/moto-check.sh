#!/usr/bin/env bash
# Manifests that pin S3 versions, against a store that keeps versions (moto's server: the
# in-process s3s-fs store keeps none). Installs moto[server] from PyPI into a venv when
# missing, starts it on 127.0.0.1 only, then: a versioned bucket with two objects (boto3,
# moto's own dependency, is the ordinary client here); `haul plan --s3-versions` pins them;
# both keys are written again; `haul get --manifest` must bring the pinned (first)
# versions, and a manifest pinned by ETag alone must fail both objects, naming why.
# Usage: .ci/moto-check.sh HAUL_BINARY
set -euo pipefail
HAUL=$(realpath "$1")

VERSION=5.2.5
VENV=${HAUL_MOTO_VENV:-/tmp/haul-moto-venv}
if ! "$VENV/bin/python" -c "import moto, boto3; assert moto.__version__ == '$VERSION'" 2>/dev/null; then
  "$(dirname "$0")/pip-venv.sh" "$VENV" "moto[server]==$VERSION"
fi

WORK=$(mktemp -d /tmp/haul-moto-check.XXXXXX)
PID=""
cleanup() {
  [[ -n "$PID" ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" > "$WORK/moto.log" 2>&1 &
PID=$!
E="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  python3 -c "import urllib.request; urllib.request.urlopen('$E/moto-api/')" 2>/dev/null && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/moto.log" >&2; exit 1; }
  sleep 0.1
done
export AWS_ACCESS_KEY_ID=moto-key AWS_SECRET_ACCESS_KEY=moto-secret AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN
S3=(--endpoint "$E" --addressing-style path)

# put_all TEXT: writes set/a.bin and set/b.bin (TEXT-a, TEXT-b: the same sizes each time).
put_all() {
  "$VENV/bin/python" - "$E" "$1" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
if sys.argv[2] == "one":
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
for name in ("a", "b"):
    s3.put_object(Bucket="versioned", Key=f"set/{name}.bin", Body=f"{sys.argv[2]}-{name}".encode())
PY
}

failed=0
check() { # NAME CONDITION...
  local name=$1; shift
  if "$@"; then echo "ok: $name"; else echo "FAILED: $name" >&2; failed=1; fi
}

put_all one
"$HAUL" plan -q "${S3[@]}" --s3-versions s3://versioned/set/ > "$WORK/pinned.manifest"
"$HAUL" plan -q "${S3[@]}" s3://versioned/set/ > "$WORK/etags.manifest"
check "the plan pins version ids" grep -q $'\tetag:"[^"]*";version:' "$WORK/pinned.manifest"
put_all two

"$HAUL" get -q "${S3[@]}" --manifest "$WORK/pinned.manifest" -o "$WORK/pinned"
check "the pinned versions come back after the keys were written again" \
  bash -c '[[ $(cat "$1/a.bin") == one-a && $(cat "$1/b.bin") == one-b ]]' _ "$WORK/pinned"
check "haul verify: the copy is the manifest's" "$HAUL" verify -q "$WORK/pinned" --manifest "$WORK/pinned.manifest"

set +e
"$HAUL" get "${S3[@]}" --manifest "$WORK/etags.manifest" -o "$WORK/etags" 2> "$WORK/etags.err"
rc=$?
set -e
check "a manifest pinned by ETag alone fails both objects (exit 1)" test "$rc" -eq 1
check "… naming why" grep -q "the manifest pinned" "$WORK/etags.err"
check "… and lands nothing" bash -c '! ls "$1"/*.bin 2>/dev/null' _ "$WORK/etags"

if ((failed)); then
  echo "moto-check: FAILED" >&2
  cat "$WORK/etags.err" >&2
  exit 1
fi
echo "moto-check: passed"
