"""Routine command-line mistakes: one exception type, and the checks every subcommand shares.

A subcommand raises :class:`UsageError` for a mistake the user makes routinely (a file that
exists, a missing or unreadable input, a configuration that does not fit the file, an
out-of-range option); ``pokerdaq.cli.main`` prints ``pokerdaq <command>: <message>`` on one
line and exits with status 2, never with a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config
    from .io import RunFile


class UsageError(Exception):
    """A routine mistake on the command line; the message names the option, file or value."""


def check_new_output(
    path: str | os.PathLike[str], overwrite: bool, option: str = "--output", *, need_folder: bool = True
) -> Path:
    """``path`` as a Path; UsageError when it (or its ``.part``) exists and ``overwrite`` is false,
    or (``need_folder``) when its folder does not exist."""
    p = Path(path)
    if not overwrite:
        for existing in (p, p.with_name(p.name + ".part")):
            if existing.exists():
                raise UsageError(f"{option} {existing}: exists (pass --overwrite to replace it)")
    if p.is_dir():
        raise UsageError(f"{option} {p}: is a folder, expected a file name")
    if need_folder and not p.parent.is_dir():
        raise UsageError(f"{option} {p}: folder {p.parent} does not exist")
    return p


def check_positive(option: str, value: int | float | None) -> None:
    """UsageError unless ``value`` is None or >= 1 (counts such as ``--jobs``, ``--events``)."""
    if value is not None and not value >= 1:
        raise UsageError(f"{option} {value}: expected an integer >= 1")


def open_run_file(path: str | os.PathLike[str], option: str = "FILE") -> RunFile:
    """Open a pokerdaq run file; UsageError naming the file when it is missing, not HDF5,
    damaged, or an HDF5 file that is not a pokerdaq run file."""
    import h5py

    from .io import RunFile

    p = Path(path)
    if not p.exists():
        raise UsageError(f"{option} {p}: no such file")
    if not p.is_file():
        raise UsageError(f"{option} {p}: not a file")
    if not h5py.is_hdf5(p):
        raise UsageError(f"{option} {p}: not an HDF5 file (truncated, damaged or another format)")
    try:
        f = RunFile(p)
    except ValueError as err:  # the reader's layout check: attributes of another kind of file
        raise UsageError(f"{option} {p}: not a pokerdaq run file ({_first_line(err, str(p) + ': ')})") from None
    except Exception as err:  # h5py: OSError, RuntimeError, KeyError ... from damaged metadata
        kind = "not a pokerdaq run file" if isinstance(err, KeyError) else "damaged HDF5 file"
        raise UsageError(f"{option} {p}: {kind} ({_first_line(err, str(p) + ': ')})") from None
    try:
        # a damaged file may open and fail on its first read: read its metadata, headers and the
        # last sample chunk now, not in the middle of a command's work
        _ = f.config, f.events, f.truth, f.scalers
        if len(f):
            _ = f.samples[len(f) - 1], f.pulses[-1:] if len(f.pulses) else None
    except Exception as err:
        f.close()
        raise UsageError(f"{option} {p}: damaged run file ({_first_line(err, str(p) + ': ')})") from None
    return f


def check_config_fits(cfg: Config, run_file: RunFile, option: str = "--config") -> None:
    """UsageError unless ``cfg`` describes the detector and digitizer that wrote ``run_file``:
    the same number of channels (or, for a file of a channel subset, a map holding its
    channels), window length, sampling rate and ADC resolution."""
    a = run_file.attrs
    d = cfg.digitizer
    # an imported file holds a subset of the channel map: its channel numbers must exist in it
    channels = run_file.channels
    n_map = len(cfg.channel_map)
    if len(channels) and int(channels.max()) >= n_map:
        raise UsageError(
            f"{option}: detector.* gives {n_map} channels, but {run_file.path} holds channel {int(channels.max())}"
        )
    # a file of the whole map (its own configuration's) needs a configuration of the same size
    full = len(channels) == len(run_file.config.channel_map)
    checks = ((("channels", n_map, a.get("n_channels"), "detector.*"),) if full else ()) + (
        ("window", d.window_samples, a.get("window_samples"), "digitizer.window_samples"),
        ("sampling rate", d.sampling_rate_hz, a.get("sampling_rate_hz"), "digitizer.sampling_rate_hz"),
        ("ADC bits", d.adc_bits, a.get("adc_bits"), "digitizer.adc_bits"),
    )
    for what, mine, stored, key in checks:
        if stored is None:
            continue
        if float(mine) != float(stored):
            raise UsageError(
                f"{option}: {key} gives {what} {_fmt(what, mine)}, but {run_file.path} was "
                f"recorded with {_fmt(what, stored)}"
            )


def check_endpoint(endpoint: str, option: str = "--bind") -> None:
    """UsageError unless ``endpoint`` is ``tcp://HOST:PORT`` (PORT 1..65535 or ``*``) or ``ipc://PATH``."""
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return
    m = re.fullmatch(r"tcp://([^:/\s]+|\[[0-9a-fA-F:.]+\]):(\*|\d+)", endpoint)
    if not m:
        raise UsageError(f"{option} {endpoint!r}: expected tcp://HOST:PORT (PORT 1..65535 or *) or ipc://PATH")
    port = m.group(2)
    if port != "*" and not 1 <= int(port) <= 65535:
        raise UsageError(f"{option} {endpoint!r}: port {port} out of range 1..65535 (or * for a free port)")


def parse_http_address(value: str, option: str = "--http") -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT``; the host defaults to
    127.0.0.1 (loopback: the status page has no authentication), port 0 lets the system choose."""
    m = re.fullmatch(r"(?:(\[[0-9a-fA-F:.]+\]|[^:\[\]/\s]*):)?(\d+)", value.strip())
    if not m:
        raise UsageError(f"{option} {value!r}: expected HOST:PORT, :PORT or PORT (e.g. 127.0.0.1:8080)")
    host, port = (m.group(1) or "127.0.0.1").strip("[]"), int(m.group(2))
    if not 0 <= port <= 65535:
        raise UsageError(f"{option} {value!r}: port {port} out of range 0..65535 (0: a free port)")
    return host, port


def _fmt(what: str, value) -> str:
    if what == "sampling rate":
        return f"{float(value) / 1e6:g} MHz"
    if what == "window":
        return f"{int(value)} samples"
    return str(int(value))


def _first_line(err: BaseException, strip: str = "") -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[len(strip) :] if strip and text.startswith(strip) else text


def damaged_input_message(err: BaseException, args) -> str | None:
    """The one-line message for an error h5py raised while reading an input's data (a damaged
    chunk found in the middle of the work), or None when ``err`` is something else.

    ``open_run_file`` checks what it can cheaply at opening; a chunk damaged deep inside a file
    shows only when it is read, so ``pokerdaq.cli.main`` asks this function about errors.
    """
    if not isinstance(err, (OSError, RuntimeError)):
        return None
    tb = err.__traceback__
    from_h5py = False
    while tb is not None:
        if "/h5py/" in tb.tb_frame.f_code.co_filename.replace("\\", "/"):
            from_h5py = True
            break
        tb = tb.tb_next
    if not from_h5py:
        return None
    inputs: list[str] = []
    for name in ("file", "files", "input", "stimulus"):
        value = getattr(args, name, None)
        if value:
            inputs.extend([value] if isinstance(value, str) else list(value))
    where = ", ".join(map(str, inputs)) or "an HDF5 file"
    return f"{where}: damaged HDF5 data ({_first_line(err)})"
