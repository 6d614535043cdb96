"""Counter-based random numbers for the numba kernels.

Every random draw in a kernel comes from a small SplitMix64 stream whose state is derived
from a key (seed, hit identifier, channel, sample block...). The same key always gives the
same numbers, whichever window, chunk or thread asks for them: this is what makes the
sample stream independent of the chunking and of the channel selection.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@numba.njit(cache=True, inline="always")
def mix64(z):
    """SplitMix64 finaliser: a bijective 64-bit hash."""
    z = np.uint64(z)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True, inline="always")
def key_state(seed_key, a, b):
    """Initial stream state for the pair of identifiers (a, b) under ``seed_key``."""
    return mix64(np.uint64(seed_key) ^ mix64(np.uint64(a) * _GOLDEN + mix64(np.uint64(b))))


@numba.njit(cache=True, inline="always")
def uniform(state):
    """Return (new state, u) with u uniform in [0, 1)."""
    state = np.uint64(state) + _GOLDEN
    return state, float(mix64(state) >> _S11) * _INV53


@numba.njit(cache=True)
def exponential(state, tau):
    state, u = uniform(state)
    return state, -tau * math.log1p(-u)


@numba.njit(cache=True)
def normal(state):
    """Box-Muller (one of the pair): two uniforms per normal, cheap and exact."""
    state, u1 = uniform(state)
    state, u2 = uniform(state)
    return state, math.sqrt(-2.0 * math.log1p(-u1)) * math.cos(2.0 * math.pi * u2)


@numba.njit(cache=True)
def normal_pair(state):
    """Box-Muller: two independent standard normals from two uniforms."""
    state, u1 = uniform(state)
    state, u2 = uniform(state)
    r = math.sqrt(-2.0 * math.log1p(-u1))
    return state, r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)


@numba.njit(cache=True)
def approx_normal(state):
    """Irwin-Hall with 3 uniforms, scaled to unit variance: bounded at +-3, 4x cheaper than
    Box-Muller; used for the per-cell gain spread, a few % effect."""
    state, u1 = uniform(state)
    state, u2 = uniform(state)
    state, u3 = uniform(state)
    return state, 2.0 * (u1 + u2 + u3 - 1.5)


@numba.njit(cache=True)
def poisson(state, lam):
    """Poisson deviate: multiplication method below 30, PTRS (Hoermann 1993) above."""
    if lam <= 0.0:
        return state, 0
    if lam < 30.0:
        limit = math.exp(-lam)
        k = 0
        state, prod = uniform(state)
        while prod > limit:
            k += 1
            state, u = uniform(state)
            prod *= u
        return state, k
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        state, u = uniform(state)
        state, v = uniform(state)
        u -= 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= vr:
            return state, int(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b) <= -lam + k * loglam - math.lgamma(k + 1.0):
            return state, int(k)
