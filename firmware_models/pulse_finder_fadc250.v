// pulse_finder_fadc250: the fADC250 firmware v3 pulse finder, docs/firmware-spec.md 1.13.
//
// Window mode only. One 13-bit sample word per clock when in_valid is high (bits 11:0 the
// code, bit 12 out of range; 0x1FFF overflow, 0x1000 underflow), framed by in_first and
// in_last like pulse_finder. The window is written to a 1024-word RAM while the pedestal, VMIN
// and the timing-pedestal conditions (1.13.2) accumulate; after in_last a sequential engine
// reads the RAM one sample per clock:
//   SCAN/CONF : crossing search and NSAT confirmation (1.13.3)
//   INTEG     : integral, out-of-range words, samples over threshold (1.13.4)
//   REARM     : wait for a sample below THR, then SCAN again (at most 3 pulses)
//   PEAK/WALK : per pulse, the first fall in [c+1, N-1) and the walk back to sample 1
//               (1.13.5, 1.13.6)
//   DIV       : FINE by a 6-step restoring division, one quotient bit per clock
//   EMIT      : the record, one clock of out_valid
// A window takes at most N (NSAT + 8) + 3 (NSB + NSA) + 40 clocks after in_last (each scan
// position costs at most 1 + NSAT clocks, each pulse NSB + NSA + 1 to integrate and 2 N + 9
// to time); busy is high until the last record has left. A
// window that starts while busy is not captured and sets err_overflow (sticky): the readout
// must wait for busy to fall, as it waits for a trigger's window to be read out.
`default_nettype none

module pulse_finder_fadc250 (
    input  wire               clk,
    input  wire               rst,
    input  wire               in_valid,
    input  wire               in_enable,      // 0: windows are counted (window id), not captured
    input  wire               in_first,
    input  wire               in_last,
    input  wire [12:0]        in_sample,
    input  wire [47:0]        in_index0,
    input  wire [13:0]        reg_thr,
    input  wire [5:0]         reg_nsb,
    input  wire [8:0]         reg_nsa,
    input  wire [3:0]         reg_nsat,
    input  wire [2:0]         reg_nped_log2,
    input  wire [13:0]        reg_maxped,
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
    output reg  [10:0]        out_quality,
    output wire               busy,
    output reg                err_overflow
);

    /* verilator no_inline_module */

    localparam [12:0] W_OVF = 13'h1FFF;
    localparam [12:0] W_UNF = 13'h1000;

    localparam [3:0] S_IDLE = 4'd0, S_CAPT = 4'd1, S_SCAN = 4'd2, S_CONF = 4'd3,
                     S_INTEG = 4'd4, S_REARM = 4'd5, S_NEXT = 4'd6, S_PEAK = 4'd7,
                     S_WALK = 4'd8, S_DIV = 4'd9, S_EMIT = 4'd10;

    reg  [3:0]  state;
    reg  [12:0] mem [0:1023];
    reg  [10:0] n_cnt;          // samples captured
    reg  [10:0] nw;             // window length N
    reg  [47:0] idx0;
    reg  [15:0] win_id;         // windows started since reset (all of them, as pulse_finder)
    reg  [15:0] cap_id;         // the id of the window being processed
    // capture-time pedestal (1.13.2)
    reg  [16:0] ped_sum;
    reg  [13:0] vmin_sum;
    reg         ped_bad, tped_bad, no_time;
    // engine
    reg  [10:0] i, j, k, lo, hi;
    reg  [21:0] acc;
    reg  [9:0]  nover;
    reg         q_ovf, q_unf;
    reg  [1:0]  np;             // pulses found
    reg  [1:0]  pp;             // pulse being timed
    reg  [10:0] pc   [0:2];     // crossing
    reg  [21:0] pint [0:2];     // integral
    reg  [9:0]  pnov [0:2];
    reg  [10:0] pnint[0:2];     // hi - lo
    reg  [2:0]  pq   [0:2];     // {nsa_beyond, unf, ovf}
    reg  [11:0] vpeak;
    reg  [10:0] coarse;
    reg         pk_beyond, pk_none, t_bad;
    reg  [17:0] drem;
    reg  [11:0] dden;
    reg  [5:0]  dq;
    reg  [2:0]  dstep;

    // asynchronous RAM reads at two engine addresses (bit 10: out of the RAM, never read)
    /* verilator lint_off UNUSEDSIGNAL */
    wire [10:0] ra = (state == S_CONF) ? j : (state == S_WALK) ? (k - 11'd1) : i;
    wire [10:0] rb = (state == S_PEAK) ? (i - 11'd1) : k;
    /* verilator lint_on UNUSEDSIGNAL */
    /* verilator lint_off UNUSEDSIGNAL */
    wire [12:0] wa = mem[ra[9:0]];                   // port a: the code only
    /* verilator lint_on UNUSEDSIGNAL */
    wire [12:0] wb = mem[rb[9:0]];
    wire [11:0] xa = wa[11:0];
    wire [11:0] xb = wb[11:0];
    wire [14:0] thr15 = {1'b0, reg_thr};
    wire        a_over = {3'd0, xa} > thr15;          // x > THR
    wire        b_over = {3'd0, xb} > thr15;
    wire        b_ge   = {3'd0, xb} >= thr15;         // x >= THR (re-arming)

    // sample being captured
    wire        take  = in_valid & in_enable & (in_first | (state == S_CAPT));
    wire [10:0] n_cur = in_first ? 11'd0 : n_cnt;
    wire [11:0] x_in  = in_sample[11:0];
    wire        oor_in = (in_sample == W_OVF) | (in_sample == W_UNF);
    wire [5:0]  nped  = 6'd1 << reg_nped_log2;
    wire [11:0] nsat_ext = {8'd0, reg_nsat};
    // S = N - NSAT (>= 0: NSAT <= NSA <= N)
    wire [11:0] s_last = {1'b0, nw} - nsat_ext;
    wire [11:0] conf_end = {1'b0, i} + nsat_ext;      // i + NSAT
    wire [11:0] c_nsa  = {1'b0, i} + {3'd0, reg_nsa};  // c + NSA (i = c in INTEG set-up)
    /* verilator lint_off UNUSEDSIGNAL */
    wire [11:0] hi_cur = (c_nsa > {1'b0, nw}) ? {1'b0, nw} : c_nsa;   // <= N: bit 11 is 0
    wire [13:0] vmin  = vmin_sum >> reg_nped_log2;    // <= 4095: bits 13:12 are 0
    /* verilator lint_on UNUSEDSIGNAL */
    wire [10:0] lo_cur = (i > {5'd0, reg_nsb}) ? (i - {5'd0, reg_nsb}) : 11'd0;
    wire [10:0] c_p    = pc[pp];
    wire [11:0] fall_lim = {1'b0, c_p} + {3'd0, reg_nsa} + 12'd1;   // c + NSA + 1
    /* verilator lint_off UNUSEDSIGNAL */
    wire [12:0] mid_sum = {1'b0, vmin[11:0]} + {1'b0, vpeak};   // VMID = mid_sum[12:1]
    /* verilator lint_on UNUSEDSIGNAL */
    wire [27:0] prod  = {11'd0, ped_sum} * {17'd0, pnint[pp]};
    /* verilator lint_off UNUSEDSIGNAL */
    wire [27:0] prod_sh = prod >> reg_nped_log2;     // < 2^24: PED_SUM * n_int / NPED
    /* verilator lint_on UNUSEDSIGNAL */
    wire [24:0] net   = {3'd0, pint[pp]} - prod_sh[24:0];
    wire [17:0] dsub  = {6'd0, dden} << (3'd5 - dstep);
    wire        dge   = drem >= dsub;

    always @(posedge clk) begin
        if (rst) begin
            state <= S_IDLE;
            win_id <= 16'd0;
            out_valid <= 1'b0;
            err_overflow <= 1'b0;
            n_cnt <= 11'd0;
            out_window <= 16'd0; out_pulse_index <= 4'd0; out_crossing <= 48'd0;
            out_coarse <= 48'd0; out_fine <= 6'd0; out_time <= 54'd0; out_peak <= 14'd0;
            out_integral <= 24'd0; out_integral_net <= 25'd0; out_pedestal <= 19'd0;
            out_n_over <= 10'd0; out_quality <= 11'd0;
        end else begin
            out_valid <= 1'b0;
            // ---------------------------------------------------------------- capture
            if (in_valid & in_first) win_id <= win_id + 16'd1;
            if (in_valid & in_enable & in_first & (state != S_IDLE) & (state != S_CAPT))
                err_overflow <= 1'b1;                 // window while the engine is busy
            else if (take) begin
                mem[n_cur[9:0]] <= in_sample;
                n_cnt <= n_cur + 11'd1;
                if (in_first) begin
                    cap_id <= win_id + 16'd1;
                    idx0 <= in_index0;
                end
                if (n_cur < {5'd0, nped}) begin
                    ped_sum <= (in_first ? 17'd0 : ped_sum) + {5'd0, x_in};
                    ped_bad <= (in_first ? 1'b0 : ped_bad) | ({2'd0, x_in} > reg_maxped) | oor_in;
                end
                if ((n_cur < 11'd4) & (n_cur < {5'd0, nped}))
                    vmin_sum <= (in_first ? 14'd0 : vmin_sum) + {2'd0, x_in};
                else if (in_first)
                    vmin_sum <= 14'd0;
                if (n_cur < 11'd4) begin
                    tped_bad <= (in_first ? 1'b0 : tped_bad) | ({2'd0, x_in} > reg_maxped)
                                | ({2'd0, x_in} > reg_thr) | oor_in;
                    no_time <= (in_first ? 1'b0 : no_time) | ({2'd0, x_in} > reg_thr);
                end
                if (in_last) begin
                    nw <= n_cur + 11'd1;
                    state <= S_SCAN;
                    i <= 11'd0;
                    np <= 2'd0;
                end else begin
                    state <= S_CAPT;
                end
            end
            // ---------------------------------------------------------------- engine
            case (state)
                S_SCAN: begin
                    if ((np == 2'd3) | ({1'b0, i} >= s_last)) begin
                        pp <= 2'd0;
                        i <= pc[0] + 11'd1;
                        state <= (np == 2'd0) ? S_IDLE : S_PEAK;
                    end else if (!a_over) begin
                        i <= i + 11'd1;
                    end else if (conf_end - 12'd1 > s_last) begin
                        i <= i + 11'd1;               // confirmation would pass N - NSAT
                    end else if (reg_nsat == 4'd1) begin
                        lo <= lo_cur; k <= lo_cur; hi <= hi_cur[10:0];
                        acc <= 22'd0; nover <= 10'd0; q_ovf <= 1'b0; q_unf <= 1'b0;
                        state <= S_INTEG;
                    end else begin
                        j <= i + 11'd1;
                        state <= S_CONF;
                    end
                end
                S_CONF: begin
                    if ({1'b0, j} == conf_end) begin
                        lo <= lo_cur; k <= lo_cur; hi <= hi_cur[10:0];
                        acc <= 22'd0; nover <= 10'd0; q_ovf <= 1'b0; q_unf <= 1'b0;
                        state <= S_INTEG;
                    end else if (!a_over) begin
                        i <= i + 11'd1;
                        state <= S_SCAN;
                    end else begin
                        j <= j + 11'd1;
                    end
                end
                S_INTEG: begin
                    if (k == hi) begin
                        pc[np] <= i;
                        pint[np] <= acc;
                        pnov[np] <= nover;
                        pnint[np] <= hi - lo;
                        pq[np] <= {({1'b0, i} + {3'd0, reg_nsa} > {1'b0, nw}), q_unf, q_ovf};
                        np <= np + 2'd1;
                        state <= S_REARM;             // k = hi = min(c + NSA, N)
                    end else begin
                        acc <= acc + {10'd0, xb};
                        q_ovf <= q_ovf | (wb == W_OVF);
                        q_unf <= q_unf | (wb == W_UNF);
                        if ((k >= i) & b_over) nover <= nover + 10'd1;
                        k <= k + 11'd1;
                    end
                end
                S_REARM: begin
                    if ((k < nw) & b_ge) k <= k + 11'd1;
                    else begin
                        i <= k + 11'd1;
                        state <= S_SCAN;
                    end
                end
                S_NEXT: begin
                    if ({1'b0, pp} + 3'd1 == {1'b0, np}) state <= S_IDLE;
                    else begin
                        pp <= pp + 2'd1;
                        i <= pc[pp + 2'd1] + 11'd1;
                        state <= S_PEAK;
                    end
                end
                S_PEAK: begin
                    // i: the candidate falling sample, compared with i - 1 (read port b)
                    if ({1'b0, i} >= {1'b0, nw} - 12'd1) begin
                        vpeak <= 12'd0;
                        pk_beyond <= 1'b1; pk_none <= 1'b1; t_bad <= 1'b0;
                        coarse <= c_p; dq <= 6'd0;
                        state <= S_EMIT;
                    end else if (xa < xb) begin
                        vpeak <= xb;
                        pk_beyond <= {1'b0, i} > fall_lim;
                        pk_none <= 1'b0; t_bad <= 1'b0;
                        coarse <= c_p; dq <= 6'd0;
                        k <= i - 11'd1;                // p
                        state <= no_time ? S_EMIT : S_WALK;
                    end else begin
                        i <= i + 11'd1;
                    end
                end
                S_WALK: begin
                    // k = p, p-1, ..., 1: x[k-1] (port a) <= VMID < x[k] (port b)
                    if (k == 11'd0) begin
                        t_bad <= 1'b1;
                        state <= S_EMIT;
                    end else if ((xa <= mid_sum[12:1]) & (xb > mid_sum[12:1])) begin
                        coarse <= k - 11'd1;
                        drem <= {mid_sum[12:1] - xa, 6'd0};
                        dden <= xb - xa;
                        dq <= 6'd0;
                        dstep <= 3'd0;
                        state <= S_DIV;
                    end else begin
                        k <= k - 11'd1;
                    end
                end
                S_DIV: begin
                    if (dge) begin
                        drem <= drem - dsub;
                        dq <= dq | (6'd1 << (3'd5 - dstep));
                    end
                    if (dstep == 3'd5) state <= S_EMIT;
                    dstep <= dstep + 3'd1;
                end
                S_EMIT: begin
                    out_valid <= 1'b1;
                    out_window <= cap_id;
                    out_pulse_index <= {2'd0, pp};
                    out_crossing <= idx0 + {37'd0, c_p};
                    out_coarse <= idx0 + {37'd0, t_bad ? c_p : coarse};
                    out_fine <= t_bad ? 6'd0 : dq;
                    out_time <= {idx0 + {37'd0, t_bad ? c_p : coarse}, t_bad ? 6'd0 : dq};
                    out_peak <= {2'd0, vpeak};
                    out_integral <= {2'd0, pint[pp]};
                    out_integral_net <= net;
                    out_pedestal <= {2'd0, ped_sum};
                    out_n_over <= pnov[pp];
                    out_quality <= {tped_bad, 2'b00, t_bad, pk_none, pk_beyond, pq[pp][1],
                                    pq[pp][0], 1'b0, pq[pp][2], ped_bad};
                    state <= S_NEXT;
                end
                default: ;
            endcase
        end
    end

    assign busy = (state != S_IDLE) & (state != S_CAPT) | out_valid;

endmodule

`default_nettype wire
