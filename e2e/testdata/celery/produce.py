"""Sends tasks with .delay(), as a Python producer would, and prints one
JSON line: the task ids and the wall-clock time just before the first
.delay() (seconds since the epoch).

usage: produce.py COUNT SECONDS [COUNT SECONDS ...]   (bursts: COUNT tasks sleeping SECONDS each)
       produce.py --pause S ...                       (a pause between bursts)
"""

import json
import sys
import time

from fleet_tasks import sleep

ids = []
first = None
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
print(json.dumps({"first_delay_at": first, "ids": ids}))
