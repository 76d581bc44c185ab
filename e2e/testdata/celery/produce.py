"""Sends tasks with .delay(), as a Python producer would, and prints one
JSON line: the task ids and the wall-clock times just before the first
.delay() and just after it returned (seconds since the epoch; the first
call of a fresh process also connects to the broker).

usage: produce.py COUNT SECONDS [COUNT SECONDS ...]   (bursts: COUNT tasks sleeping SECONDS each)
       produce.py --pause S ...                       (a pause between bursts)
"""

import json
import sys
import time

from fleet_tasks import sleep

ids = []
first = None
first_done = None
args = sys.argv[1:]
i = 0
while i < len(args):
    if args[i] == "--pause":
        time.sleep(float(args[i + 1]))
        i += 2
        continue
    count, seconds = int(args[i]), float(args[i + 1])
    i += 2
    for _ in range(count):
        if first is None:
            first = time.time()
        ids.append(sleep.delay(seconds).id)
        if first_done is None:
            first_done = time.time()
print(json.dumps({"first_delay_at": first, "first_delay_done_at": first_done, "ids": ids}))
