"""Child process of test_io_crash.py: holds a finished run file open for writing without SWMR.

Usage: python _held_open_writer.py FILE.part
Prints "holding" once the file is open for write (its superblock marks it so), then waits to be
killed: the situation of any non-SWMR tool that died while it had the file open.
"""

import sys

import h5py

with h5py.File(sys.argv[1], "r+", libver="latest") as f:
    f.attrs["producer"] = "held-open"
    f.flush()
    print("holding", flush=True)
    sys.stdin.read()
