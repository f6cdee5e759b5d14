"""Functions that print, for the task-log tests (workers import them by name)."""

import os
import subprocess
import sys
import time


def wait_for(path, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def chatty(n):
    for i in range(n):
        print(f"line {i}")
    print("to stderr", file=sys.stderr)
    os.write(1, b"raw fd write\n")
    subprocess.run(["echo", "from a child process"], check=True)
    return n


def flood(size):
    sys.stdout.write("x" * size + "\n")
    return size


def print_wait_print(event_path):
    print("before the event")
    wait_for(event_path)
    print("after the event")
    return "done"


def print_then_hang_once(marker):
    print(f"running in pid {os.getpid()}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        wait_for(marker + ".never", timeout_s=120)
    return "second run"
