"""``pokerdaq recover FILE.part ...``: the recovery tool for run files whose writer died."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ._reader import RunFile
    from ._recover import recover

    status = 0  # each file on its own: the others are still recovered
    for name in args.files:
        try:
            final = recover(name, overwrite=args.overwrite)
        except FileExistsError:  # routine mistakes: status 2, the same words as every command
            print(
                f"pokerdaq recover: {name}: the final file {name[: -len('.part')]} exists "
                f"(pass --overwrite to replace it)",
                file=sys.stderr,
            )
            status = 2
            continue
        except (OSError, ValueError) as err:  # missing, not a .part, not HDF5 at all
            print(f"pokerdaq recover: {name}: {err}", file=sys.stderr)
            status = 2
            continue
        from ._stream_layout import StreamFile, is_stream_file

        if is_stream_file(final):  # a streaming recording (docs/hdf5-layout.md "Streaming recordings")
            st = StreamFile(final)
            print(
                f"{final}: streaming recording, {len(st.blocks)} blocks survived ({len(st.hits)} L0 hits, up to "
                f"slice {st.last_slice}); lost {st.attrs['recovered_blocks_lost']} blocks that failed their "
                f"CRC-32 or could not be read; {len(st.decisions)} decisions, {len(st.trigger_steps)} decision steps"
            )
            continue
        with RunFile(final) as f:
            a = f.attrs
            print(
                f"{final}: {len(f)} events survived (events {a['first_event_number']}..{a['last_event_number']}); "
                f"dropped {a['recovered_rows_after_flush']} rows after the last flush; lost "
                f"{a['recovered_checksum_failures']} events that failed their CRC-32 or could not be read "
                f"and {a.get('recovered_scalers_lost', 0)} scaler rows"
            )
    return status
