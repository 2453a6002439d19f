"""Jobs for the worker-pool tests (imported by name in spawned workers)."""

import os
import time


def echo(payload):
    return payload


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def crash(_):
    os._exit(7)  # like a segfault: no exception, no reply


def fail(_):
    raise ValueError("bad program")


def hog(megabytes):
    block = bytearray(megabytes * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1  # touch every page so it is resident
    time.sleep(10)
    return len(block)
