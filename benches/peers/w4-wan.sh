# benches/peers/w4-wan.sh — sourced by ab-tail.sh and sidecar-cost.sh: case w4's WAN and list.
# w4_up OUT ROOT TAIL: starts haul-wan (40 ms RTT, think 10 ms, 1 Gbit/s, no stragglers,
# stalls 0.2 a MiB of 200 ms) in front of nginx on 18080, sets WAN_PID and W (its address),
# and writes OUT/list: the 200 small files of the fixture TAIL with large.bin as the 151st.
w4_up() {
  local out=$1 root=$2 tail=$3
  "$root/target/release/examples/haul-wan" --upstream 127.0.0.1:18080 --rtt-ms 40 --think-median-ms 10 \
    --rate-mbit 1000 --stragglers 0 --stalls-per-mib 0.2 --stall-ms 200 > "$out/wan" 2>&1 &
  WAN_PID=$!
  for _ in $(seq 100); do grep -q LISTENING "$out/wan" && break; sleep 0.05; done
  W=$(awk '/LISTENING/ {print $2}' "$out/wan")
  (cd "$tail" && ls | grep -v -e large -e sha256 | sed -n 1,150p; echo large.bin; ls | grep -v -e large -e sha256 | sed -n '151,$p') |
    sed "s#^#http://$W/tail/#" > "$out/list"
}
