#!/usr/bin/env bash
# benches/peers/ab-checksums.sh: what checksum verification costs in case c (1,000 x 256 KiB
# from SeaweedFS on loopback, into files), builds interleaved run by run:
#   A = $OLD (a build that verifies nothing, e.g. 11d5500) on objects with no checksum,
#   B = $NEW on the same objects (MD5 ETags),
#   C = $NEW on a copy that haul uploaded (the store keeps its CRC-64/NVME).
# Needs: benches/peers/s3-up.sh 18333, s3://bench/s256k/ seeded (benches/peers.sh --only c
# does it), and the copy: haul s3 get --endpoint … -o s3://bench/crc/ s3://bench/s256k/
set -euo pipefail
. /tmp/s3-18333/env.sh
OLD=${OLD:?a build without verification} NEW=${NEW:-target/release/haul}
out=$(mktemp -d /tmp/abcrc.XXXX)
for run in 1 2 3 4 5; do
  for v in A B C; do
    case $v in
      A) bin=$OLD; src=s3://bench/s256k/ ;;
      B) bin=$NEW; src=s3://bench/s256k/ ;;
      C) bin=$NEW; src=s3://bench/crc/s256k/ ;;
    esac
    d=$out/$v-$run # never used before
    t=$( { /usr/bin/time -f "%e %U %S" "$bin" s3 get -q --endpoint "$S3_ENDPOINT_URL" -o "$d" "$src" >/dev/null; } 2>&1 | tail -1)
    echo "$v run$run wall/user/sys $t files=$(find "$d" -type f | wc -l)"
  done
done
rm -rf "$out"
