"""Child process of test_io_crash.py: writes deterministic events until it is killed.

Usage: python _killed_writer.py OUTPUT.h5 BATCH FLUSH_EVERY [--no-events]
Prints "opened" once the file exists, "wrote N" after each batch, and "flushed N" after each flush
that made N events durable (the writer flushes every FLUSH_EVERY events, never on time).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _io_helpers import make_batch

from pokerdaq.config import load_config
from pokerdaq.io import RunFileWriter


def main() -> None:
    out, batch, flush_every = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    cfg = load_config()
    w = RunFileWriter(out, cfg, producer="killed-writer", flush_every_events=flush_every, flush_interval_s=1e6)
    print("opened", flush=True)
    if "--no-events" in sys.argv:
        sys.stdin.read()  # wait to be killed
        return
    first = 0
    while True:  # until SIGKILL
        headers, samples, pulses, truth = make_batch(cfg, batch, first_event=first)
        w.write_events(headers, samples, pulses, truth)
        first += batch
        print("wrote", first, flush=True)
        if first % flush_every == 0:
            print("flushed", first, flush=True)


if __name__ == "__main__":
    main()
