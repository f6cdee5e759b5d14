"""The functions the benchmarks run (shipped by value, like any SDK user's)."""

from __future__ import annotations

import time


def noop():
    return None


def chatty():
    print("one line of output")  # a task that logs: W1 with output capture at work


def nap(seconds):
    time.sleep(seconds)
    return seconds


def echo(value):
    return value


def identity(i):
    return i
