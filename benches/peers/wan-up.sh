# benches/peers/wan-up.sh — sourced by the bench scripts that put a loopback server across
# the emulated WAN.
# wan_start OUT ROOT UPSTREAM_PORT [haul-wan flags...]: starts ROOT's release haul-wan in front
# of 127.0.0.1:UPSTREAM_PORT with 40 ms RTT and a think time of median 10 ms, and the flags
# (--rate-mbit, --stragglers, stalls); its output in OUT/wan. Sets WAN_PID and W (host:port).
wan_start() {
  local out=$1 root=$2 upstream=$3; shift 3
  "$root/target/release/examples/haul-wan" --upstream "127.0.0.1:$upstream" --rtt-ms 40 \
    --think-median-ms 10 "$@" > "$out/wan" 2>&1 &
  WAN_PID=$!
  for _ in $(seq 100); do grep -q LISTENING "$out/wan" && break; sleep 0.05; done
  W=$(awk '/LISTENING/ {print $2}' "$out/wan")
}
