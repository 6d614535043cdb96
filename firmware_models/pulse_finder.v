// pulse_finder: streaming per-channel pulse finder, docs/firmware-spec.md Part 1.
//
// One 14-bit sample per clock when in_valid is high. A window starts with the sample that
// carries in_first and ends with the sample that carries in_last (both may be on the same
// sample). Stream mode is one window that ends at `finish` (in_last on the final sample);
// in_index0 (48 bit) gives the absolute index of the first sample of the window, so stream
// and window mode share one datapath (window mode: in_index0 = 0).
//
// Structure (all clock counts are clk cycles):
//   live stage   : per-sample threshold/candidate/confirmation, pile-up, peak, N_OVER,
//                  running integral (sliding NSB sum + open-range sum), pedestal; at the end
//                  of the open range (sample c+NSA-1, or the window's last sample) it pushes
//                  one entry into an 8-deep queue. The time walk over [lo+1, c] is resolved
//                  there from a 64-sample snapshot taken at the crossing (parallel compare).
//   scanner      : for pulses whose mid amplitude lies above x[c], reads the history RAM
//                  from c+1 on (one sample per clock, x[c..p] is non-decreasing, so the first
//                  sample above VMID is the unique straddle of the spec's backward walk).
//   divider      : 6-stage pipelined restoring divider, one quotient bit per stage (FINE).
//   output stage : waits for each entry's due clock (fixed latency), applies MORE_PULSES:
//                  the MAX_PULSES-th pulse is held until a release
//                  token (further pulse confirmed, or window end) comes through the queue.
// Latency: fixed, NSA + 10 clocks from the closing sample to out_valid (README.md).
//
// Registers must be stable while busy is high (change them between windows after busy
// falls). Deliberately wrong variants (test-bench self-checks) are built from edited copies
// of this file at test time (tests/firmware/_mutants.py), never from this source.
`default_nettype none

module pulse_finder (
    input  wire               clk,
    input  wire               rst,
    // sample stream
    input  wire               in_valid,
    input  wire               in_first,
    input  wire               in_last,
    input  wire [13:0]        in_sample,
    input  wire [47:0]        in_index0,
    // registers (docs/firmware-spec.md 1.2)
    input  wire [13:0]        reg_thr,
    input  wire [5:0]         reg_nsb,
    input  wire [8:0]         reg_nsa,
    input  wire [3:0]         reg_nsat,
    input  wire [2:0]         reg_nped_log2,
    input  wire [13:0]        reg_maxped,
    input  wire [3:0]         reg_max_pulses,
    input  wire               reg_ped_mode,
    input  wire [13:0]        reg_ped_cfg,
    // pulse record (docs/firmware-spec.md 1.10)
    output reg                out_valid,
    output reg  [15:0]        out_window,
    output reg  [3:0]         out_pulse_index,
    output reg  [47:0]        out_crossing,
    output reg  [47:0]        out_coarse,
    output reg  [5:0]         out_fine,
    output reg  [53:0]        out_time,
    output reg  [13:0]        out_peak,
    output reg  [23:0]        out_integral,
    output reg  [24:0]        out_integral_net,
    output reg  [18:0]        out_pedestal,
    output reg  [9:0]         out_n_over,
    output reg  [9:0]         out_quality,
    // status
    output wire               busy,
    output reg                err_overflow      // sticky: queue/FIFO overflow or a late record
);

    // one C++ class for all channel instances in the simulator (compile time of the bank)
    /* verilator no_inline_module */

    localparam [13:0] RAIL_HI = 14'd16383;

    // ------------------------------------------------------------------ queue entry layout
    // {pulse, rel, more, held, win[16], idx[8], c[48], caddr[10], needa, vmid[14], xc[14],
    //  bfound, bj[6], bxa[14], bxb[14], vpeak[14], integ[24], net[25], ped[19], nover[10], q[10],
    //  due[16]}
    localparam integer EW = 4 + 16 + 8 + 48 + 10 + 1 + 14 + 14 + 1 + 6 + 14 + 14
                            + 14 + 24 + 25 + 19 + 10 + 10 + 16;
    // fixed latency: records leave LAT_BASE + NSA clocks after the clock of the closing sample
    localparam [15:0] LAT_BASE = 16'd10;

    // ------------------------------------------------------------------ live state
    reg         in_win;
    reg  [47:0] n_abs;          // absolute index of the next sample
    reg  [6:0]  n_rel;          // window-relative index of the next sample, saturates at 127
    reg  [15:0] win_id;
    reg  [13:0] sh [0:62];      // sh[j] = x[n-1-j]
    reg  [18:0] ped_acc;
    reg         ped_bad;
    reg  [19:0] win_sum;        // sum x[max(n-NSB,0) .. n-1]
    reg  [5:0]  cnt_full;       // samples == 16383 in that range
    reg  [5:0]  cnt_zero;       // samples == 0 in that range
    reg  [3:0]  idx_cnt;        // PULSE_INDEX of the next confirmed pulse (u4, wraps: spec 1.10)
    reg  [4:0]  nconf;          // confirmed pulses in this window, saturating at 31
    // tracked candidate / open pulse
    reg         trk;
    reg         conf;
    reg  [3:0]  conf_cnt;
    reg  [8:0]  d;              // offset of the last processed sample from c
    reg  [47:0] t_c;
    reg  [9:0]  t_caddr;
    reg  [5:0]  t_nb;           // c - lo
    reg         t_nsb_before;
    reg  [3:0]  t_idx;
    reg         t_rep;
    reg         t_held;
    reg  [23:0] t_integ;
    reg         t_ovf, t_unf;
    reg  [9:0]  t_nover;
    reg         t_over_run;
    reg  [13:0] t_max;
    reg  [8:0]  t_max_off;
    reg         t_pk_found;
    reg  [8:0]  t_p_off;
    reg  [13:0] t_vpeak;
    reg         t_pileup;
    reg  [13:0] t_xc;
    reg  [13:0] snap [0:63];    // snap[j] = x[c-j]
    // history RAM, addressed by a free-running sample pointer
    reg  [13:0] mem [0:1023];
    reg  [9:0]  wptr;

    // ------------------------------------------------------------------ live combinational
    wire        take      = in_valid & (in_win | in_first);
    wire [13:0] x         = in_sample;
    wire [13:0] x_prev    = sh[0];
    wire [47:0] n_cur_abs = in_first ? in_index0 : n_abs;
    wire [6:0]  n_cur_rel = in_first ? 7'd0 : n_rel;
    wire [5:0]  nped      = 6'd1 << reg_nped_log2;
    wire        ped_phase = ~reg_ped_mode & ({1'b0, n_cur_rel} < {2'b0, nped});
    wire [18:0] ped_acc_cur = in_first ? 19'd0 : ped_acc;
    wire [18:0] ped_cfg_sum = {5'd0, reg_ped_cfg} << reg_nped_log2;
    wire [18:0] ped_sum   = reg_ped_mode ? ped_cfg_sum : ped_acc;
    /* verilator lint_off UNUSEDSIGNAL */
    wire [18:0] ped_shift = ped_sum >> reg_nped_log2;   // P is u14: bits 18:14 are zero
    /* verilator lint_on UNUSEDSIGNAL */
    wire [14:0] thr_sum   = {1'b0, ped_shift[13:0]} + {1'b0, reg_thr};
    // P and T = P + THR are registered one clock behind PED_SUM (timing: the pedestal sum,
    // shift and add are off the crossing / peak / VMID path). Exact: the pedestal is final
    // after sample NPED-1 (measured) and the first candidate is sample SEARCH_START + 1, at
    // least one clock later (NPED >= 1; configured mode: sample 1, the registers being stable
    // from the window's first sample on); a close is never earlier than its candidate.
    reg  [13:0] ped_p;
    reg  [14:0] thr_abs;
    always @(posedge clk) begin
        ped_p   <= ped_shift[13:0];
        thr_abs <= thr_sum;
    end
    wire        above      = {1'b0, x} > thr_abs;
    wire        above_prev = {1'b0, x_prev} > thr_abs;
    wire [6:0]  search_first = reg_ped_mode ? 7'd1 : ({1'b0, nped} + 7'd1);
    wire        cand_ok   = n_cur_rel >= search_first;
    wire        cand      = cand_ok & ~above_prev & above;

    wire [19:0] win_sum_cur  = in_first ? 20'd0 : win_sum;
    wire [5:0]  cnt_full_cur = in_first ? 6'd0 : cnt_full;
    wire [5:0]  cnt_zero_cur = in_first ? 6'd0 : cnt_zero;
    wire [5:0]  tap_sel   = (reg_nsb == 6'd0) ? 6'd0 : (reg_nsb - 6'd1);
    wire [13:0] tap       = sh[tap_sel];
    wire        tap_ok    = (reg_nsb != 6'd0) & (n_cur_rel >= {1'b0, reg_nsb});
    wire        x_full    = (x == RAIL_HI);
    wire        x_zero    = (x == 14'd0);

    // per-sample next state of the tracked pulse
    reg         c_start;        // a candidate starts at this sample
    reg         c_trk, c_conf, c_drop, c_close, c_conf_now;
    reg  [3:0]  c_conf_cnt;
    reg  [8:0]  c_d;
    reg  [23:0] c_integ;
    reg         c_ovf, c_unf, c_over_run, c_pk_found, c_pileup;
    reg  [9:0]  c_nover;
    reg  [13:0] c_max, c_vpeak;
    reg  [8:0]  c_max_off, c_p_off;
    reg  [5:0]  c_nb;
    reg         c_nsb_before;
    reg  [13:0] c_xc;
    reg  [3:0]  c_idx;
    reg         c_rep, c_held, c_rel_more, c_end_rel;
    reg  [4:0]  c_nconf;
    reg  [13:0] snap_n [0:63];
    // close-time values
    reg  [13:0] k_vpeak;
    /* verilator lint_off UNUSEDSIGNAL */
    reg  [14:0] k_mid_sum;      // bit 0 is dropped by the >> 1
    reg  [13:0] k_vmid;
    reg         k_full_range;
    reg  [9:0]  k_q;
    reg  [9:0]  k_nint;
    reg  [28:0] k_prod;
    reg  [28:0] k_prod_sh;      // < 2^24 (spec 1.6), upper bits zero
    /* verilator lint_on UNUSEDSIGNAL */
    reg  [8:0]  nsa_m1;
    // free-running clock count and the due time of an entry pushed this clock
    reg  [15:0] clk_cnt;
    reg         err_late, err_fifo;
    wire [15:0] due_now = clk_cnt + {7'd0, reg_nsa} + LAT_BASE;
    // close stage: the entry formed at the closing sample (needa, walk and net integral left zero)
    reg         push0;
    reg  [EW-1:0] push_e0;
    integer     j;

    always @(*) begin
        nsa_m1 = reg_nsa - 9'd1;
        c_start = 1'b0;
        // a new window (in_first) abandons a pulse left open by a window without in_last
        c_trk = trk & ~in_first; c_conf = conf & ~in_first; c_drop = 1'b0; c_close = 1'b0; c_conf_now = 1'b0;
        c_conf_cnt = conf_cnt; c_d = d;
        c_integ = t_integ; c_ovf = t_ovf; c_unf = t_unf;
        c_nover = t_nover; c_over_run = t_over_run;
        c_max = t_max; c_max_off = t_max_off; c_pk_found = t_pk_found; c_p_off = t_p_off;
        c_vpeak = t_vpeak; c_pileup = t_pileup;
        c_nb = t_nb; c_nsb_before = t_nsb_before; c_xc = t_xc;
        c_idx = t_idx; c_rep = t_rep; c_held = t_held;
        c_rel_more = 1'b0; c_end_rel = 1'b0;
        c_nconf = in_first ? 5'd0 : nconf;
        for (j = 0; j < 64; j = j + 1) snap_n[j] = snap[j];

        if (take) begin
            if (!c_trk) begin
                if (cand) begin
                    c_start = 1'b1;
                    c_trk = 1'b1;
                    c_d = 9'd0;
                    c_conf_cnt = 4'd1;
                    c_conf = 1'b0;
                    c_conf_now = (reg_nsat == 4'd1);
                    c_integ = {4'd0, win_sum_cur} + {10'd0, x};
                    c_ovf = (cnt_full_cur != 6'd0) | x_full;
                    c_unf = (cnt_zero_cur != 6'd0) | x_zero;
                    c_nover = 10'd1;
                    c_over_run = 1'b1;
                    c_max = x; c_max_off = 9'd0;
                    c_pk_found = 1'b0; c_p_off = 9'd0; c_vpeak = x;
                    c_pileup = 1'b0;
                    c_nb = ({1'b0, n_cur_rel} < {2'b0, reg_nsb}) ? n_cur_rel[5:0] : reg_nsb;
                    c_nsb_before = ({1'b0, n_cur_rel} < {2'b0, reg_nsb});
                    c_xc = x;
                    snap_n[0] = x;
                    for (j = 1; j < 64; j = j + 1) snap_n[j] = sh[j-1];
                end
            end else begin
                c_d = d + 9'd1;
                if (!conf) begin
                    if (!above) begin
                        c_drop = 1'b1;
                        c_trk = 1'b0;
                    end else begin
                        c_conf_cnt = conf_cnt + 4'd1;
                        c_conf_now = (c_conf_cnt == reg_nsat);
                    end
                end
                c_integ = t_integ + {10'd0, x};
                c_ovf = t_ovf | x_full;
                c_unf = t_unf | x_zero;
                if (t_over_run & above) c_nover = t_nover + 10'd1;
                else c_over_run = 1'b0;
                if (!t_pk_found) begin
                    if (x < x_prev) begin
                        c_pk_found = 1'b1;
                        c_p_off = c_d - 9'd1;
                        c_vpeak = x_prev;
                    end else if (x > t_max) begin
                        c_max = x;
                        c_max_off = c_d;
                    end
                end
                if (~above_prev & above) c_pileup = 1'b1;
            end

            if (c_conf_now) begin
                c_conf = 1'b1;
                c_idx = idx_cnt;
                c_rep = (reg_max_pulses == 4'd0) | (nconf < {1'b0, reg_max_pulses});
                c_held = (reg_max_pulses != 4'd0) & (nconf == ({1'b0, reg_max_pulses} - 5'd1));
                c_rel_more = (reg_max_pulses != 4'd0) & (nconf == {1'b0, reg_max_pulses});
                c_nconf = (nconf == 5'd31) ? nconf : (nconf + 5'd1);
            end
            if (c_trk & c_conf & ((c_d == nsa_m1) | in_last)) c_close = 1'b1;
            if (in_last & (reg_max_pulses != 4'd0) & (c_nconf == {1'b0, reg_max_pulses}))
                c_end_rel = 1'b1;
            // an abandoned window (in_first without in_last) releases its held pulse
            if (in_first & in_win & (reg_max_pulses != 4'd0) & (nconf == {1'b0, reg_max_pulses}))
                c_end_rel = 1'b1;
        end

        // close-time quantities (valid when c_close)
        k_full_range = (c_d == nsa_m1);
        k_vpeak    = c_pk_found ? c_vpeak : c_max;
        k_mid_sum  = {1'b0, ped_p} + {1'b0, k_vpeak};
        k_vmid     = k_mid_sum[14:1];
        k_q = 10'd0;
        k_q[0] = ~reg_ped_mode & ped_bad;
        k_q[1] = ~k_full_range;
        k_q[2] = c_nsb_before;
        k_q[3] = c_ovf;
        k_q[4] = c_unf;
        k_q[5] = ~c_pk_found & k_full_range;
        k_q[6] = ~c_pk_found & ~k_full_range;
        k_q[8] = c_pileup;
        k_nint = {1'b0, c_d} + 10'd1 + {4'd0, c_nb};

        push0 = 1'b0;
        push_e0 = {EW{1'b0}};
        if (take & c_close & c_rep) begin
            push0 = 1'b1;
            push_e0 = {1'b1, c_end_rel, 1'b0, c_held, (in_first ? win_id + 16'd1 : win_id), {4'd0, c_idx},
                       (c_start ? n_cur_abs : t_c), (c_start ? wptr : t_caddr),
                       1'b0, k_vmid, c_xc,
                       1'b0, 6'd0, 14'd0, 14'd0, k_vpeak, c_integ, 25'd0, ped_sum,
                       c_nover, k_q, due_now};
        end else if (take & (c_rel_more | c_end_rel)) begin
            push0 = 1'b1;
            push_e0 = {1'b0, 1'b1, c_rel_more, 1'b0, {(EW - 20){1'b0}}, due_now};
        end
    end

    // ------------------------------------------------------------------ walk stage
    // One clock after the close: the backward walk over k = c, c-1, .., lo+1 (j = c - k, the
    // first straddle of VMID) and INTEGRAL_NET, from registered values (the snapshot register
    // holds the closing pulse's samples: a pulse that starts and closes on one sample wrote it
    // at that clock, and a later candidate overwrites it one clock later at the earliest).
    // The walk is a parallel compare, the lowest set bit and an AND-OR select (log depth),
    // not a 63-step priority chain. The entry's due clock was set at the close: the output
    // timing does not change.
    reg           st_v;
    reg  [EW-1:0] st_e;
    reg  [5:0]    st_nb;
    reg  [9:0]    st_nint;
    wire [13:0]   st_vmid  = st_e[EW-88 -: 14];
    wire [23:0]   st_integ = st_e[EW-165 -: 24];
    wire [18:0]   st_ped   = st_e[EW-214 -: 19];
    reg  [62:0]   w_hit, w_first;
    reg           k_bfound;
    reg  [5:0]    k_bj;
    reg  [13:0]   k_bxa, k_bxb;
    reg  [24:0]   k_net;
    reg           push;
    reg  [EW-1:0] push_e;
    integer       jw;

    always @(posedge clk) begin
        if (rst) st_v <= 1'b0;
        else st_v <= push0;
        st_e <= push_e0;
        st_nb <= c_nb;
        st_nint <= k_nint;
    end

    always @(*) begin
        for (jw = 0; jw < 63; jw = jw + 1)
            w_hit[jw] = (jw < {26'd0, st_nb}) && (snap[jw+1] <= st_vmid) && (snap[jw] > st_vmid);
        w_first = w_hit & (~w_hit + 63'd1);        // the lowest j that straddles
        k_bfound = |w_hit;
        k_bj = 6'd0; k_bxa = 14'd0; k_bxb = 14'd0;
        for (jw = 0; jw < 63; jw = jw + 1) begin
            k_bj  = k_bj  | ({6{w_first[jw]}} & jw[5:0]);
            k_bxa = k_bxa | ({14{w_first[jw]}} & snap[jw+1]);
            k_bxb = k_bxb | ({14{w_first[jw]}} & snap[jw]);
        end
        k_prod = {10'd0, st_ped} * {19'd0, st_nint};
        k_prod_sh = k_prod >> reg_nped_log2;
        k_net = {1'b0, st_integ} - k_prod_sh[24:0];
        push = st_v;
        push_e = st_e;
        if (st_e[EW-1]) begin      // a pulse (a release token keeps its zeros)
            // needa (straddle after the crossing) from registered VMID and x[c]: one
            // comparator less on the live path
            push_e[EW-87] = (st_e[EW-102 -: 14] <= st_vmid);
            push_e[EW-116] = k_bfound;
            push_e[EW-117 -: 6] = k_bj;
            push_e[EW-123 -: 14] = k_bxa;
            push_e[EW-137 -: 14] = k_bxb;
            push_e[EW-189 -: 25] = k_net;
        end
    end

    // ------------------------------------------------------------------ live sequential
    integer i;
    always @(posedge clk) begin
        if (rst) begin
            in_win <= 1'b0;
            trk <= 1'b0;
            conf <= 1'b0;
            win_id <= 16'd0;
            n_abs <= 48'd0;
            n_rel <= 7'd0;
            wptr <= 10'd0;
            nconf <= 5'd0;
            idx_cnt <= 4'd0;
        end else if (take) begin
            in_win <= ~in_last;
            if (in_first) win_id <= win_id + 16'd1;
            n_abs <= n_cur_abs + 48'd1;
            n_rel <= (n_cur_rel == 7'd127) ? n_cur_rel : (n_cur_rel + 7'd1);
            mem[wptr] <= x;
            wptr <= wptr + 10'd1;
            sh[0] <= x;
            for (i = 1; i < 63; i = i + 1) sh[i] <= sh[i-1];
            if (ped_phase) begin
                ped_acc <= ped_acc_cur + {5'd0, x};
                ped_bad <= (in_first ? 1'b0 : ped_bad) | (x > reg_maxped);
            end else if (in_first) begin
                ped_acc <= 19'd0;
                ped_bad <= 1'b0;
            end
            if (reg_nsb == 6'd0) win_sum <= 20'd0;
            else win_sum <= win_sum_cur + {6'd0, x} - (tap_ok ? {6'd0, tap} : 20'd0);
            cnt_full <= cnt_full_cur + {5'd0, x_full & (reg_nsb != 6'd0)}
                        - {5'd0, tap_ok & (tap == RAIL_HI)};
            cnt_zero <= cnt_zero_cur + {5'd0, x_zero & (reg_nsb != 6'd0)}
                        - {5'd0, tap_ok & (tap == 14'd0)};
            nconf <= c_nconf;
            if (in_first) idx_cnt <= c_conf_now ? 4'd1 : 4'd0;
            else if (c_conf_now) idx_cnt <= idx_cnt + 4'd1;

            trk <= c_trk & ~c_close & ~in_last;
            conf <= c_conf & ~c_close & ~c_drop;
            conf_cnt <= c_conf_cnt;
            d <= c_d;
            if (c_start) begin
                t_c <= n_cur_abs;
                t_caddr <= wptr;
                for (i = 0; i < 64; i = i + 1) snap[i] <= snap_n[i];
            end
            t_nb <= c_nb; t_nsb_before <= c_nsb_before;
            t_idx <= c_idx; t_rep <= c_rep; t_held <= c_held;
            t_integ <= c_integ; t_ovf <= c_ovf; t_unf <= c_unf;
            t_nover <= c_nover; t_over_run <= c_over_run;
            t_max <= c_max; t_max_off <= c_max_off;
            t_pk_found <= c_pk_found; t_p_off <= c_p_off; t_vpeak <= c_vpeak;
            t_pileup <= c_pileup; t_xc <= c_xc;
        end
    end

    // ------------------------------------------------------------------ queue (8 entries)
    reg  [EW-1:0] q_mem [0:7];
    reg  [3:0]    q_wr, q_rd;
    wire          q_empty = (q_wr == q_rd);
    wire          q_full  = (q_wr[2:0] == q_rd[2:0]) & (q_wr[3] != q_rd[3]);
    wire [EW-1:0] q_head  = q_mem[q_rd[2:0]];
    reg           q_pop;

    always @(posedge clk) begin
        if (rst) begin
            q_wr <= 4'd0;
            err_queue <= 1'b0;
        end else if (push) begin
            if (q_full) err_queue <= 1'b1;
            else begin
                q_mem[q_wr[2:0]] <= push_e;
                q_wr <= q_wr + 4'd1;
            end
        end
    end

    // ------------------------------------------------------------------ scanner + divider
    integer s;
    // fields of the queue head and of the entry being scanned
    wire          qh_pulse  = q_head[EW-1];
    wire [47:0]   qh_c      = q_head[EW-29 -: 48];
    wire [9:0]    qh_caddr  = q_head[EW-77 -: 10];
    wire          qh_needa  = q_head[EW-87];
    wire [13:0]   qh_vmid   = q_head[EW-88 -: 14];
    wire [13:0]   qh_xc     = q_head[EW-102 -: 14];
    wire          qh_bfound = q_head[EW-116];
    wire [5:0]    qh_bj     = q_head[EW-117 -: 6];
    wire [13:0]   qh_bxa    = q_head[EW-123 -: 14];
    wire [13:0]   qh_bxb    = q_head[EW-137 -: 14];

    reg           s_busy;
    reg  [EW-1:0] s_e;
    reg  [9:0]    s_addr;
    reg  [13:0]   s_prev;
    reg  [47:0]   s_coarse;
    wire [13:0]   s_x = mem[s_addr];
    wire [13:0]   s_vmid = s_e[EW-88 -: 14];
    // divider input (stage 0)
    reg           dv   [0:6];
    reg  [EW-1:0] de   [0:6];
    reg  [47:0]   dco  [0:6];
    reg  [19:0]   drem [0:6];
    reg  [13:0]   dden [0:6];
    reg  [5:0]    dq   [0:6];
    reg           dtb  [0:6];

    always @(*) begin
        q_pop = ~rst & ~s_busy & ~q_empty;
    end

    always @(posedge clk) begin
        if (rst) begin
            q_rd <= 4'd0;
            s_busy <= 1'b0;
            for (s = 0; s < 7; s = s + 1) dv[s] <= 1'b0;
        end else begin
            for (s = 0; s < 6; s = s + 1) begin
                dv[s+1]  <= dv[s];
                de[s+1]  <= de[s];
                dco[s+1] <= dco[s];
                dden[s+1] <= dden[s];
                dtb[s+1] <= dtb[s];
                drem[s+1] <= dge[s] ? (drem[s] - dsub[s]) : drem[s];
                dq[s+1]  <= dq[s] | ({5'd0, dge[s]} << (5 - s));
            end
            dv[0] <= 1'b0;
            if (q_pop) begin
                q_rd <= q_rd + 4'd1;
                if (qh_pulse & qh_needa) begin
                    s_busy <= 1'b1;
                    s_e <= q_head;
                    s_addr <= qh_caddr + 10'd1;
                    s_prev <= qh_xc;
                    s_coarse <= qh_c;
                end else begin
                    dv[0] <= 1'b1;
                    de[0] <= q_head;
                    dtb[0] <= ~qh_bfound;
                    dco[0] <= qh_bfound
                              ? (qh_c - {42'd0, qh_bj} - 48'd1)
                              : qh_c;
                    drem[0] <= qh_bfound
                               ? {qh_vmid - qh_bxa, 6'd0} : 20'd0;
                    dden[0] <= qh_bfound ? (qh_bxb - qh_bxa) : 14'd1;
                    dq[0] <= 6'd0;
                end
            end else if (s_busy) begin
                if (s_x > s_vmid) begin
                    s_busy <= 1'b0;
                    dv[0] <= 1'b1;
                    de[0] <= s_e;
                    dtb[0] <= 1'b0;
                    dco[0] <= s_coarse;
                    drem[0] <= {s_vmid - s_prev, 6'd0};
                    dden[0] <= s_x - s_prev;
                    dq[0] <= 6'd0;
                end else begin
                    s_prev <= s_x;
                    s_addr <= s_addr + 10'd1;
                    s_coarse <= s_coarse + 48'd1;
                end
            end
        end
    end

    // ------------------------------------------------------------------ divider (6 stages)
    // stage s (0..5) decides quotient bit 5-s: rem >= den << (5-s).
    integer t;
    reg [19:0] dsub [0:5];
    reg        dge  [0:5];
    always @(*) begin
        for (t = 0; t < 6; t = t + 1) begin
            dsub[t] = {6'd0, dden[t]} << (5 - t);
            dge[t]  = drem[t] >= dsub[t];
        end
    end

    // ------------------------------------------------------------------ output FIFO + stage
    // Entries wait in an 8-deep FIFO until their due clock; due times increase strictly with
    // the push order, so at most one entry fires per clock and the record order is kept.
    localparam integer FW = EW + 48 + 6 + 1;
    reg  [FW-1:0] f_mem [0:7];
    reg  [3:0]    f_wr, f_rd;
    wire          f_empty = (f_wr == f_rd);
    wire          f_full  = (f_wr[2:0] == f_rd[2:0]) & (f_wr[3] != f_rd[3]);
    wire [FW-1:0] f_head  = f_mem[f_rd[2:0]];
    wire [EW-1:0] oe      = f_head[FW-1 -: EW];
    wire [47:0]   o_coarse = f_head[54:7];
    wire [5:0]    o_fine  = f_head[6:1];
    wire          o_tbad  = f_head[0];
    wire          o_pulse = oe[EW-1];
    wire          o_rel   = oe[EW-2];
    wire          o_more  = oe[EW-3];
    wire          o_held  = oe[EW-4];
    wire [15:0]   o_win   = oe[EW-5 -: 16];
    /* verilator lint_off UNUSEDSIGNAL */
    wire [7:0]    o_idx   = oe[EW-21 -: 8];     // bits 7:4 are zero (u4 index)
    /* verilator lint_on UNUSEDSIGNAL */
    wire [47:0]   o_c     = oe[EW-29 -: 48];
    wire [13:0]   o_vpeak = oe[EW-151 -: 14];
    wire [23:0]   o_integ = oe[EW-165 -: 24];
    wire [24:0]   o_net   = oe[EW-189 -: 25];
    wire [18:0]   o_ped   = oe[EW-214 -: 19];
    wire [9:0]    o_nover = oe[EW-233 -: 10];
    wire [9:0]    o_q     = oe[EW-243 -: 10] | {2'b00, o_tbad, 7'd0};
    wire [15:0]   o_due   = oe[15:0];
    wire [15:0]   o_wait  = o_due - clk_cnt;          // modular: 0 = due now, bit 15 = late
    wire          o_fire  = ~f_empty & ((o_wait == 16'd0) | o_wait[15]);

    reg           hold_v;
    reg  [15:0]   h_win;
    reg  [3:0]    h_idx;
    reg  [47:0]   h_c, h_coarse;
    reg  [5:0]    h_fine;
    reg  [13:0]   h_vpeak;
    reg  [23:0]   h_integ;
    reg  [24:0]   h_net;
    reg  [18:0]   h_ped;
    reg  [9:0]    h_nover, h_q;

    always @(posedge clk) begin
        if (rst) begin
            clk_cnt <= 16'd0;
            f_wr <= 4'd0;
            f_rd <= 4'd0;
            out_valid <= 1'b0;
            // record bus defined from reset on (no X in 4-state simulators)
            out_window <= 16'd0; out_pulse_index <= 4'd0; out_crossing <= 48'd0;
            out_coarse <= 48'd0; out_fine <= 6'd0; out_time <= 54'd0; out_peak <= 14'd0;
            out_integral <= 24'd0; out_integral_net <= 25'd0; out_pedestal <= 19'd0;
            out_n_over <= 10'd0; out_quality <= 10'd0;
            hold_v <= 1'b0;
            err_late <= 1'b0;
            err_fifo <= 1'b0;
        end else begin
            clk_cnt <= clk_cnt + 16'd1;
            if (dv[6]) begin
                if (f_full) err_fifo <= 1'b1;
                else begin
                    f_mem[f_wr[2:0]] <= {de[6], dco[6], dtb[6] ? 6'd0 : dq[6], dtb[6]};
                    f_wr <= f_wr + 4'd1;
                end
            end
            out_valid <= 1'b0;
            if (o_fire) begin
                f_rd <= f_rd + 4'd1;
                if (o_wait != 16'd0) err_late <= 1'b1;
                if (o_pulse & o_held & ~o_rel) begin
                    hold_v <= 1'b1;
                    h_win <= o_win; h_idx <= o_idx[3:0]; h_c <= o_c; h_coarse <= o_coarse;
                    h_fine <= o_fine; h_vpeak <= o_vpeak; h_integ <= o_integ; h_net <= o_net;
                    h_ped <= o_ped; h_nover <= o_nover; h_q <= o_q;
                end else if (o_pulse) begin
                    out_valid <= 1'b1;
                    out_window <= o_win; out_pulse_index <= o_idx[3:0]; out_crossing <= o_c;
                    out_coarse <= o_coarse; out_fine <= o_fine; out_time <= {o_coarse, o_fine};
                    out_peak <= o_vpeak; out_integral <= o_integ; out_integral_net <= o_net;
                    out_pedestal <= o_ped; out_n_over <= o_nover; out_quality <= o_q;
                end else if (o_rel & hold_v) begin
                    hold_v <= 1'b0;
                    out_valid <= 1'b1;
                    out_window <= h_win; out_pulse_index <= h_idx; out_crossing <= h_c;
                    out_coarse <= h_coarse; out_fine <= h_fine; out_time <= {h_coarse, h_fine};
                    out_peak <= h_vpeak; out_integral <= h_integ; out_integral_net <= h_net;
                    out_pedestal <= h_ped; out_n_over <= h_nover;
                    out_quality <= h_q | {o_more, 9'd0};
                end
            end
        end
    end

    reg  err_queue;
    always @(*) err_overflow = err_queue | err_fifo | err_late;

    reg any_dv;
    integer u;
    always @(*) begin
        any_dv = 1'b0;
        for (u = 0; u < 7; u = u + 1) any_dv = any_dv | dv[u];
    end
    assign busy = st_v | ~q_empty | s_busy | any_dv | ~f_empty | hold_v | trk;

endmodule

`default_nettype wire
