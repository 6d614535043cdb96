"""Child process of test_daq_streaming.py: copies a streaming recording block by block until killed.

Usage: python _killed_stream_writer.py SOURCE.h5 OUTPUT.h5 FLUSHED
Writes the source's blocks (hits, samples, board messages), decisions, trigger inputs and scalers
with a StreamFileWriter that never flushes on time; flushes once after FLUSHED blocks (prints
"flushed"), writes the remaining blocks without a flush, prints "written" and waits to be killed.
"""

import sys

import numpy as np

from pokerdaq.io import StreamFile, StreamFileWriter


def main() -> None:
    src, out, flushed = StreamFile(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    w = StreamFileWriter(
        out,
        src.config,
        l0_threshold=src.l0_threshold,
        pad_before=src.pad_before,
        pad_after=src.pad_after,
        trigger_seed=src.trigger_seed,
        flush_interval_s=1e6,
    )
    w.write_decisions(src.decisions)
    w.write_trigger_inputs(src.trigger_steps, src.trigger_primitives)
    w.write_scalers(src.scalers)
    for i, b in enumerate(src.blocks):
        h = src.hits[int(b["first_hit"]) : int(b["first_hit"]) + int(b["n_hits"])].copy()
        s = src.samples[int(b["first_sample"]) : int(b["first_sample"]) + int(b["n_samples"])]
        h["sample_offset"] -= b["first_sample"]
        m = src.board_messages[
            (src.board_messages["last_slice"] >= b["first_slice"])
            & (src.board_messages["last_slice"] <= b["last_slice"])
        ]
        w.write_block(
            int(b["first_slice"]), int(b["last_slice"]), h, np.asarray(s, np.uint16), m, int(b["missing_boards"])
        )
        if i + 1 == flushed:
            w.flush()
            print("flushed", flush=True)
    print("written", flush=True)
    sys.stdin.read()  # wait to be killed


if __name__ == "__main__":
    main()
