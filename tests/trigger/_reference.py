"""A naive, pure-Python reading of docs/firmware-spec.md Part 2, to check the numba model.

Written from the text, not from the kernels: Python ints, lists and dicts, one step at a time.
Only the register vector (the spec's register table) is shared with the model.
"""

from __future__ import annotations

from bisect import bisect_left

from pokerdaq.trigger import _registers as R

E_MAX = 2**22 - 1
S_MAX = 2**24 - 1
TYPES = ("physics", "beam", "random", "calibration", "muon")


def energy(net: int, channel: int, regs) -> int:
    if net <= 0:
        return 0
    e = min((net * int(regs.ch_gain[channel])) >> int(regs.params[R.P_FRAC]), E_MAX)
    k = int(regs.ch_lut[channel])
    if k >= 0:
        lut = [int(v) for v in regs.luts[k]]
        s = int(regs.lut_shift[k])
        i = e // 2**s
        if i >= len(lut) - 1:
            e = lut[-1]
        else:
            frac = e - i * 2**s
            e = lut[i] + ((lut[i + 1] - lut[i]) * frac) // 2**s
        e = min(e, E_MAX)
    return e


def hits(records, regs):
    """List of (time, channel, energy) sorted by time then channel."""
    out = [
        (int(r["time"]), int(r["channel"]), energy(int(r["integral_net"]), int(r["channel"]), regs)) for r in records
    ]
    return sorted(out)


def beam_candidates(hit_list, regs, next_min=None, issue_limit=None):
    p = lambda k: int(regs.params[k])  # noqa: E731
    w, thr, k_min, lat = p(R.P_BEAM_W), p(R.P_BEAM_THR), p(R.P_BEAM_K), p(R.P_LAT)
    beam = [(t, c) for t, c, e in hit_list if regs.ch_role[c] == R.ROLE_BEAM and e >= thr]
    found = []
    t_min = next_min
    for t0, _ in beam:
        if t_min is not None and t0 < t_min:
            continue
        if issue_limit is not None and t0 // 64 + lat >= issue_limit:
            break
        first = bisect_left(beam, (t0, -1))  # hits sorted by time: those at t0 or later
        counters = set()
        for t, c in beam[first:]:
            if t >= t0 + w:
                break
            counters.add(int(regs.ch_bit[c]))
        if len(counters) >= k_min:
            found.append(t0)
            t_min = t0 + w
    return found


def evaluate(hit_list, t_ref, regs):
    p = lambda k: int(regs.params[k])  # noqa: E731
    bmask = smask = vmask = 0
    e_srd = e_veto = 0
    boards = {}
    # only the hits in the span of all windows (hit_list is sorted by time)
    lo = bisect_left(hit_list, (t_ref + p(R.P_SPAN_LO), -1, -1))
    hi = bisect_left(hit_list, (t_ref + p(R.P_SPAN_HI), -1, -1))
    for t, c, e in hit_list[lo:hi]:
        dt = t - t_ref
        role = int(regs.ch_role[c])
        bit = 1 << int(regs.ch_bit[c])
        if role == R.ROLE_BEAM and 0 <= dt < p(R.P_BEAM_W) and e >= p(R.P_BEAM_THR):
            bmask |= bit
        elif role == R.ROLE_SRD and p(R.P_SRD_LO) <= dt < p(R.P_SRD_HI):
            e_srd = min(e_srd + e, S_MAX)
            if p(R.P_SRD_EMIN) <= e <= p(R.P_SRD_EMAX):
                smask |= bit
        elif role == R.ROLE_VETO and p(R.P_VETO_LO) <= dt < p(R.P_VETO_HI):
            e_veto = min(e_veto + e, S_MAX)
            if e >= p(R.P_VETO_THR):
                vmask |= bit
        elif (
            role in (R.ROLE_PRS, R.ROLE_ECAL)
            and p(R.P_CALO_LO) <= dt < p(R.P_CALO_HI)
            or role == R.ROLE_HCAL
            and p(R.P_HCAL_LO) <= dt < p(R.P_HCAL_HI)
        ):
            key = (int(regs.ch_board[c]), role)
            boards[key] = min(boards.get(key, 0) + e, S_MAX)
    sums = {}
    for role in (R.ROLE_PRS, R.ROLE_ECAL, R.ROLE_HCAL):
        total = 0
        for b in range(p(R.P_N_BOARDS)):
            total = min(total + boards.get((b, role), 0), S_MAX)
        sums[role] = total
    e_calo = min(sums[R.ROLE_PRS] + sums[R.ROLE_ECAL], S_MAX)
    cond = {
        "beam": bin(bmask).count("1") >= p(R.P_BEAM_K),
        "srd": bin(smask).count("1") >= p(R.P_SRD_K),
        "veto": vmask != 0,
        "ecal_low": e_calo < p(R.P_ECAL_CUT),
        "preshower": sums[R.ROLE_PRS] >= p(R.P_PRS_MIN),
        "ecal_calib": e_calo >= p(R.P_CALIB_MIN),
        "ecal_mip": p(R.P_MIP_LO) <= e_calo < p(R.P_MIP_HI),
        "hcal": sums[R.ROLE_HCAL] >= p(R.P_HCAL_THR),
        "random": False,
        "pileup": False,
    }
    evaluate.boards = boards  # the partial sums, for test_board_partial_sums
    return cond, dict(
        beam_mask=bmask,
        srd_mask=smask,
        veto_mask=vmask,
        e_preshower=sums[R.ROLE_PRS],
        e_ecal=sums[R.ROLE_ECAL],
        e_calo=e_calo,
        e_hcal=sums[R.ROLE_HCAL],
        e_srd=e_srd,
        e_veto=e_veto,
    )


def cond_word(cond):
    names = ("beam", "srd", "veto", "ecal_low", "preshower", "ecal_calib", "ecal_mip", "hcal", "random", "pileup")
    return sum(1 << i for i, n in enumerate(names) if cond[n])


def raw_types(cond):
    if cond["random"]:
        return {"random"}
    if not cond["beam"]:
        return set()
    t = {"beam"}
    if cond["srd"] and cond["ecal_low"] and cond["preshower"] and not cond["veto"] and not cond["pileup"]:
        t.add("physics")
    if cond["ecal_calib"]:
        t.add("calibration")
    if cond["ecal_mip"] and (cond["hcal"] or cond["veto"]):
        t.add("muon")
    return t


def type_word(types):
    return sum(1 << i for i, n in enumerate(TYPES) if n in types)


def xorshift32(x):
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


def random_ticks(regs, n_ticks):
    mode, param = int(regs.params[R.P_RND_MODE]), int(regs.params[R.P_RND_PARAM])
    ticks = []
    if mode == R.RND_POISSON:
        x = regs.random_seed
        for t in range(n_ticks):
            x = xorshift32(x)
            if x < param:
                ticks.append(t)
    elif mode == R.RND_PERIODIC:
        count = 0
        for t in range(n_ticks):
            if count == param - 1:
                ticks.append(t)
                count = 0
            else:
                count += 1
    return ticks


def run_stream(records, regs, n_ticks, busy=()):
    """All records at once; triggers with issue tick < n_ticks. Returns (rows, counters, live)."""
    p = lambda k: int(regs.params[k])  # noqa: E731
    hl = hits(records, regs)
    cands = [((t >> 6) + p(R.P_LAT), 0, t) for t in beam_candidates(hl, regs, issue_limit=n_ticks)]
    cands += [(t, 1, (t - p(R.P_LAT)) * 64) for t in random_ticks(regs, n_ticks) if t >= p(R.P_LAT)]
    cands.sort()
    prescale_count = {n: 0 for n in TYPES}
    counters = {row: {n: 0 for n in TYPES} for row in ("raw", "prescaled", "accepted", "lost_dead", "lost_busy")}
    dead_until = -1
    last_beam = None
    attempts = {"attempts": 0, "lost_dead_triggers": 0, "lost_busy_triggers": 0}
    rows = []
    dead_ticks = set()
    for issue, is_random, t_ref in cands:
        cond, sums = evaluate(hl, t_ref, regs)
        cond["random"] = bool(is_random)
        if not is_random:
            cond["pileup"] = last_beam is not None and t_ref - last_beam < p(R.P_GUARD)
            last_beam = t_ref
        raw = raw_types(cond)
        passed = set()
        for n in raw:
            counters["raw"][n] += 1
            factor = p(R.P_PRESCALE + TYPES.index(n))
            if factor > 0:
                prescale_count[n] += 1
                if prescale_count[n] == factor:
                    prescale_count[n] = 0
                    passed.add(n)
        if not passed:
            continue
        attempts["attempts"] += 1
        for n in passed:
            counters["prescaled"][n] += 1
        if issue < dead_until:
            row = "lost_dead"
        elif any(a <= issue < b for a, b in busy):
            row = "lost_busy"
        else:
            row = "accepted"
        for n in passed:
            counters[row][n] += 1
        if row != "accepted":
            attempts[row + "_triggers"] += 1
            continue
        dead_until = issue + p(R.P_DEAD)
        dead_ticks.update(range(issue, min(dead_until, n_ticks)))
        rows.append(
            dict(
                event_number=len(rows),
                timestamp=issue,
                ref_time=t_ref,
                trigger_word=type_word(passed) | type_word(raw) << 8,
                conditions=cond_word(cond),
                **sums,
            )
        )
    busy_ticks = set()
    for a, b in busy:
        busy_ticks.update(range(max(a, 0), min(b, n_ticks)))
    live = n_ticks - len(dead_ticks | busy_ticks)
    run_stream.attempts = attempts  # per-candidate counts, for the test
    return rows, counters, live
