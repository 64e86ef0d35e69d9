# benches/peers/w4-wan.sh — sourced by ab-tail.sh and sidecar-cost.sh: case w4's WAN and list.
# w4_up OUT ROOT TAIL: starts haul-wan (40 ms RTT, think 10 ms, 1 Gbit/s, no stragglers,
# stalls 0.2 a MiB of 200 ms) in front of nginx on 18080, sets WAN_PID and W (its address),
# and writes OUT/list: the 200 small files of the fixture TAIL with large.bin as the 151st.
w4_up() {
  local out=$1 root=$2 tail=$3
  . "$root/benches/peers/wan-up.sh"
  wan_start "$out" "$root" 18080 --rate-mbit 1000 --stragglers 0 --stalls-per-mib 0.2 --stall-ms 200
  (cd "$tail" && ls | grep -v -e large -e sha256 | sed -n 1,150p; echo large.bin; ls | grep -v -e large -e sha256 | sed -n '151,$p') |
    sed "s#^#http://$W/tail/#" > "$out/list"
}
