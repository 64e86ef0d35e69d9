#!/usr/bin/env bash
# `haul get` against a real nginx serving a directory (issue 4's "any HTTP server").
# Installs nginx-light when missing, serves fixtures from a private instance on 127.0.0.1,
# downloads a range template into two mountpaths and a --list into one, and checks every
# file against a sha256 manifest; reruns with --revalidate (nginx's If-Range by date and 416)
# and with --sha256. Also checks that a missing object exits 1 and is named.
# Usage: .ci/nginx-check.sh HAUL_BINARY
set -euo pipefail

HAUL=$(realpath "${1:?usage: nginx-check.sh HAUL_BINARY}")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ ! -x "$NGINX" ]]; then
  echo "== installing nginx-light"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi

WORK=$(mktemp -d /tmp/haul-nginx-check.XXXXXX)
STATE="$WORK/nginx"
cleanup() {
  [[ -f "$STATE/nginx.pid" ]] && kill -QUIT "$(cat "$STATE/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Fixtures: 200 objects of 1..64 KiB of random bytes, and a manifest.
mkdir -p "$WORK/www/set" "$STATE/tmp"
for i in $(seq -w 0 199); do
  head -c $(( (10#$i % 64 + 1) * 1024 )) /dev/urandom > "$WORK/www/set/obj-$i.bin"
done
(cd "$WORK/www/set" && sha256sum -- *.bin > "$WORK/manifest.sha256")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
USERLINE=""; [[ $(id -u) -eq 0 ]] && USERLINE="user root root;"
cat > "$STATE/nginx.conf" <<CONF
$USERLINE
worker_processes 1;
pid $STATE/nginx.pid;
error_log $STATE/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000;
    client_body_temp_path $STATE/tmp/body;
    proxy_temp_path $STATE/tmp/proxy;
    fastcgi_temp_path $STATE/tmp/fastcgi;
    uwsgi_temp_path $STATE/tmp/uwsgi;
    scgi_temp_path $STATE/tmp/scgi;
    server {
        listen 127.0.0.1:$PORT;
        root $WORK/www;
        location / { try_files \$uri =404; }
    }
}
CONF
"$NGINX" -p "$STATE" -e "$STATE/error.log" -c "$STATE/nginx.conf"
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$BASE/set/obj-000.bin" && break
  sleep 0.05
done

echo "== haul get: a range template from nginx into two mountpaths"
"$HAUL" get -o "$WORK/a" -o "$WORK/b" --workers-per-target 4 "$BASE/set/obj-{000..199}.bin"
mkdir -p "$WORK/merged"
cp "$WORK"/a/*.bin "$WORK"/b/*.bin "$WORK/merged/"
[[ $(ls "$WORK/a" | wc -l) -gt 0 && $(ls "$WORK/b" | wc -l) -gt 0 ]] || { echo "HRW used one mountpath only"; exit 1; }
(cd "$WORK/merged" && sha256sum --quiet -c "$WORK/manifest.sha256")

echo "== haul get again (a rerun revalidates): nginx says all 200 are unchanged; a changed one comes again"
touch -d "2001-01-01" "$WORK/a/$(ls "$WORK/a" | head -1)"
"$HAUL" get -o "$WORK/a" -o "$WORK/b" --workers-per-target 4 \
  "$BASE/set/obj-{000..199}.bin" 2> "$WORK/revalidate.out"
grep -q "^1 landed, 0 failed, 199 skipped" "$WORK/revalidate.out" || { cat "$WORK/revalidate.out"; exit 1; }
cp "$WORK"/a/*.bin "$WORK"/b/*.bin "$WORK/merged/"
(cd "$WORK/merged" && sha256sum --quiet -c "$WORK/manifest.sha256")

echo "== haul get --sha256: the manifest is checked"
"$HAUL" get -o "$WORK/checked" --sha256 "$WORK/manifest.sha256" "$BASE/set/obj-{000..049}.bin" > /dev/null

echo "== haul get --list"
{ echo "# two objects, one renamed"; echo "$BASE/set/obj-007.bin"; printf 'renamed.bin\t%s\n' "$BASE/set/obj-008.bin"; } > "$WORK/list.txt"
"$HAUL" get --list "$WORK/list.txt" -o "$WORK/listed"
cmp "$WORK/listed/obj-007.bin" "$WORK/www/set/obj-007.bin"
cmp "$WORK/listed/renamed.bin" "$WORK/www/set/obj-008.bin"

echo "== haul get: a missing object exits 1 and is named"
set +e
"$HAUL" get -o "$WORK/missing" "$BASE/set/obj-000.bin" "$BASE/set/nope.bin" 2> "$WORK/stderr"
code=$?
set -e
[[ $code -eq 1 ]] || { echo "expected exit 1, got $code"; exit 1; }
grep -q "failed: nope.bin: GET $BASE/set/nope.bin: HTTP status 404" "$WORK/stderr" || { cat "$WORK/stderr"; exit 1; }
[[ ! -e "$WORK/missing/nope.bin" ]]
echo "nginx-check: 5 passed, 0 failed"
