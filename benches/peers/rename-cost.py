#!/usr/bin/env python3
# benches/peers/rename-cost.py DIR MODE THREADS: 1,000 files of 64 KiB created and renamed into
# DIR by THREADS threads, each written either in DIR/.haul-work/ and renamed across directories
# (MODE cross: where haul keeps work files) or beside its final name (MODE beside). Prints the time.
import os, sys, time, threading, shutil
base = sys.argv[1]; mode = sys.argv[2]; n = 1000; threads = int(sys.argv[3]); data = os.urandom(65536)
d = os.path.join(base, f"{mode}-{time.time_ns()}"); os.makedirs(d)
work = os.path.join(d, ".haul-work"); os.makedirs(work)
def job(k):
    for i in range(k, n, threads):
        name = f"f{i:04d}.bin"
        tmp = os.path.join(work, name + ".part") if mode == "cross" else os.path.join(d, "." + name + ".haul-part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data); os.close(fd)
        os.rename(tmp, os.path.join(d, name))
t0 = time.perf_counter()
ts = [threading.Thread(target=job, args=(k,)) for k in range(threads)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"{mode} threads={threads}: {time.perf_counter()-t0:.3f} s")
shutil.rmtree(d)
