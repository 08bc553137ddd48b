#!/usr/bin/env python3
"""How fast the kernel copies page cache into user memory, by where the buffer starts.

Reads FILE (cached first) with preadv into a buffer placed OFFSET bytes after a page
boundary, for each OFFSET given, and prints the system CPU time per GiB. On the AMD EPYC
VMs this project runs on, a destination 1 to 31 bytes ahead of the source modulo 4096 is
3-5 times slower (the reason for crates/iobuf). A benchmark, not a test: it asserts nothing.

    python3 bench/copy_align.py --block 4194304 bench/work/data-1GiB.bin 0 16 64
"""
import argparse
import mmap
import os
import resource
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("offsets", nargs="*", type=int, default=[0, 8, 16, 32, 64])
    ap.add_argument("--block", type=int, default=4 << 20, help="bytes per read")
    ap.add_argument("--file-offset", type=int, default=0, help="where the reads start in FILE")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    fd = os.open(args.file, os.O_RDONLY)
    size = os.fstat(fd).st_size - args.file_offset
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    with open(args.file, "rb") as f:  # warm the page cache, untimed
        while f.read(8 << 20):
            pass
    reads = max(1, size // args.block)
    mem = mmap.mmap(-1, args.block + 8192)
    print(f"{args.file}: {reads} reads of {args.block} bytes from file offset {args.file_offset}")
    for off in args.offsets:
        if not 0 <= off < 8192:
            raise SystemExit("offsets must be in 0..8192")
        buf = memoryview(mem)[off:off + args.block]
        per_gib = []
        for _ in range(args.rounds):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            for i in range(reads):
                os.preadv(fd, [buf], args.file_offset + i * args.block)
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            gib = reads * args.block / (1 << 30)
            per_gib.append(((r1.ru_stime - r0.ru_stime) / gib, wall / gib))
        per_gib.sort()
        sys_s, wall_s = per_gib[len(per_gib) // 2]
        print(f"  buffer at page + {off:4d}: {sys_s:.3f} system CPU-s per GiB, {wall_s:.3f} s wall per GiB (median of {args.rounds})")
    os.close(fd)


if __name__ == "__main__":
    main()
