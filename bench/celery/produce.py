#!/usr/bin/python3
"""Producer side of the Celery comparison: enqueues tasks one apply_async
call at a time and prints one JSON object on stdout for the Go harness.

  produce.py rate   --producers N --seconds S   enqueue as fast as possible
  produce.py fill   --producers N --count C     fill the burn-down backlog
  produce.py steady --rate R --seconds S        paced, each task carries its enqueue time

Concurrent producers are processes, not threads: with the GIL, threads in
one interpreter would measure Python rather than Celery, and a web
application feeding Celery runs as several processes anyway.
"""

import argparse
import json
import multiprocessing as mp
import sys
import time

import bench_tasks  # imported before the fork; connections open lazily, per process


def _rate_worker(seconds, barrier, out):
    noop = bench_tasks.noop
    noop.apply_async()  # opens this process's connection outside the window
    barrier.wait()
    start = time.time()
    deadline = start + seconds
    n = 0
    while time.time() < deadline:
        noop.apply_async()
        n += 1
    out.put((n, start, time.time()))


def _fill_worker(count, barrier, out):
    noop = bench_tasks.noop
    if count > 0:
        noop.apply_async()
        count -= 1
    barrier.wait()
    start = time.time()
    for _ in range(count):
        noop.apply_async()
    out.put((count, start, time.time()))


def _run(target, producers, args_for):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(producers)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=args_for(i) + (barrier, out)) for i in range(producers)]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            sys.exit("producer exited with %s" % p.exitcode)
    count = sum(r[0] for r in results)
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    return count, elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["rate", "fill", "steady"])
    ap.add_argument("--producers", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--rate", type=int, default=1000)
    a = ap.parse_args()

    if a.mode == "rate":
        count, elapsed = _run(_rate_worker, a.producers, lambda i: (a.seconds,))
        print(json.dumps({"count": count, "seconds": elapsed}))
    elif a.mode == "fill":
        share = [a.count // a.producers + (1 if i < a.count % a.producers else 0) for i in range(a.producers)]
        count, elapsed = _run(_fill_worker, a.producers, lambda i: (share[i],))
        print(json.dumps({"count": a.count, "timed": count, "seconds": elapsed}))
    else:
        noop = bench_tasks.noop
        noop.apply_async(args=[time.time()])  # warm connection; its latency is recorded like any other
        total = int(a.rate * a.seconds)
        interval = 1.0 / a.rate
        start = time.time()
        # A rate this one process cannot reach (10,000/s) would otherwise
        # stretch the run without bound: it stops 10 % past the planned
        # duration, as the Go producers do, and the count says what it sent.
        stop_at = start + 1.1 * a.seconds
        sent = 1
        for i in range(total):
            now = time.time()
            if now > stop_at:
                break
            wait = start + i * interval - now
            if wait > 0:
                time.sleep(wait)
            noop.apply_async(args=[time.time()])
            sent += 1
        elapsed = time.time() - start
        print(json.dumps({"count": sent, "seconds": elapsed}))


if __name__ == "__main__":
    main()
