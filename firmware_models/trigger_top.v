// trigger_top: the trigger of docs/firmware-spec.md Part 2, bit for bit with pokerdaq.trigger.
//
// Input: primitive records (channel, TIME, INTEGRAL_NET) in time order, one per clock with
// in_valid/in_ready, and "advance" commands (adv_valid/adv_ready) that declare the stream
// complete below tick adv_tick (every primitive with TIME < adv_tick * 64 has been sent;
// the software contract of TriggerModel.process(records, end_sample, busy)). adv_busy is the
// DAQ busy level for the ticks [previous adv_tick, adv_tick).
//
// Structure:
//   calibration : 1 clock; channel table lookup, trig_calib, LUT read; the primitive with its
//                 energy is written into a circular buffer of 2^AW entries (time order).
//   controller  : after an advance, in issue order:
//                 beam coincidence (2.5): scans the buffer for openers (beam counter,
//                 E >= BEAM_THR, TIME >= NEXT_MIN) and ORs the counters in [t0, t0+W_BEAM);
//                 random generator (2.8, trig_random) up to the next beam candidate's issue
//                 tick (beam first at equal ticks) or adv_tick;
//                 for each candidate: trig_window over the buffer (one entry per clock from
//                 the oldest kept entry until TIME >= T_REF + SPAN_HI), global sums (one board
//                 per clock), trig_decide (conditions, types, pile-up guard), trig_prescale,
//                 trig_gate (dead time, busy), trigger record (out_valid, one clock).
//                 Then entries older than min(next opener, adv_tick*64) + SPAN_LO are dropped.
//   live time   : trig_livetime counts ticks, dead, busy and live ticks (2.12) at the end of
//                 each advance (cnt_* valid while idle).
//   idle        : high when the last advance is fully processed.
// Primitives out of time order or older than the last advance are dropped and counted
// (err_order, err_late); a full buffer drops and counts (err_overflow).
//
// Register bank (reg_we/reg_addr/reg_wdata, 32 bit; load while rst is high, RND_SEED and
// all state are taken at rst): addresses 0x00..0x22 = the register vector of
// pokerdaq.trigger (P_* indices of _registers.py), 0x23 RND_SEED, 0x24 LUT K,
// 0x28+j LUT_SHIFT[j], 0x100+ch GAIN[ch], 0x200+ch {BOARD[19:16], BIT[15:12], ROLE[10:8],
// LUT_ID[7:0]}, 0x1000 + (j << 11) + i LUT[j][i]. See firmware_models/README.md.
// Deliberately wrong variants (test-bench self-checks) are built from edited copies of the
// sources at test time (tests/firmware/_mutants.py), never from these files.
`default_nettype none

module trigger_top #(
    parameter integer AW = 10           // primitive buffer: 2^AW entries
) (
    input  wire               clk,
    input  wire               rst,
    // register bank
    input  wire               reg_we,
    input  wire [15:0]        reg_addr,
    input  wire [31:0]        reg_wdata,
    // primitive stream (2.3)
    input  wire               in_valid,
    output wire               in_ready,
    input  wire [7:0]         in_channel,
    input  wire [53:0]        in_time,
    input  wire [24:0]        in_net,
    // stream time
    input  wire               adv_valid,
    output wire               adv_ready,
    input  wire [47:0]        adv_tick,
    input  wire               adv_busy,
    output wire               idle,
    // trigger record (2.11)
    output reg                out_valid,
    output reg  [31:0]        out_event,
    output reg  [47:0]        out_timestamp,
    output reg  [53:0]        out_ref_time,
    output reg  [31:0]        out_word,
    output reg  [9:0]         out_cond,
    output reg  [7:0]         out_beam_mask,
    output reg  [15:0]        out_srd_mask,
    output reg  [15:0]        out_veto_mask,
    output reg  [23:0]        out_e_prs,
    output reg  [23:0]        out_e_ecal,
    output reg  [23:0]        out_e_calo,
    output reg  [23:0]        out_e_hcal,
    output reg  [23:0]        out_e_srd,
    output reg  [23:0]        out_e_veto,
    // scalers (2.12): per type, 32 bits each, type t at [32*t +: 32]
    output wire [159:0]       cnt_raw,
    output wire [159:0]       cnt_prescaled,
    output wire [159:0]       cnt_accepted,
    output wire [159:0]       cnt_lost_dead,
    output wire [159:0]       cnt_lost_busy,
    output wire [31:0]        cnt_attempts,
    output wire [31:0]        cnt_lost_dead_triggers,
    output wire [31:0]        cnt_lost_busy_triggers,
    // live-time counters (2.12, trig_livetime): u48 ticks, valid while idle
    output wire [47:0]        cnt_ticks,
    output wire [47:0]        cnt_dead_ticks,
    output wire [47:0]        cnt_busy_ticks,
    output wire [47:0]        cnt_live_ticks,
    output reg  [15:0]        err_overflow,
    output reg  [15:0]        err_order,
    output reg  [15:0]        err_late,
    // primitive buffer fill (entries kept): the scan length that bounds the decision latency
    output wire [AW:0]        buf_fill
);
    localparam integer DEPTH = 1 << AW;

    // ---------------------------------------------------------------- register bank
    reg [15:0]        r_lat;
    reg [23:0]        r_dead;
    reg [4:0]         r_frac;
    reg [3:0]         r_beam_k;
    reg [23:0]        r_beam_thr;
    reg [19:0]        r_w_beam;
    reg [4:0]         r_srd_k;
    reg [23:0]        r_srd_emin, r_srd_emax, r_veto_thr;
    reg signed [19:0] r_srd_lo, r_srd_hi, r_veto_lo, r_veto_hi, r_calo_lo, r_calo_hi, r_hcal_lo, r_hcal_hi;
    reg [23:0]        r_ecal_cut, r_prs_min, r_calib_min, r_mip_lo, r_mip_hi, r_hcal_thr;
    reg [1:0]         r_rnd_mode;
    reg [31:0]        r_rnd_param, r_rnd_seed;
    reg signed [19:0] r_span_lo, r_span_hi;
    reg [4:0]         r_n_boards;
    reg [19:0]        r_guard;
    reg [119:0]       r_prescale;
    reg [10:0]        r_lut_k;
    reg [4:0]         r_lut_shift [0:3];
    reg [23:0]        ch_gain  [0:255];
    reg [2:0]         ch_lut   [0:255];    // {LUT_ID >= 0, LUT_ID[1:0]}
    reg [2:0]         ch_role  [0:255];
    reg [3:0]         ch_bit   [0:255];
    reg [3:0]         ch_board [0:255];
    reg [21:0]        lut_mem  [0:8191];

    always @(posedge clk) begin
        if (reg_we) begin
            case (reg_addr[15:12])
                4'h0: begin
                    if (reg_addr[11:8] == 4'h1)      ch_gain[reg_addr[7:0]] <= reg_wdata[23:0];
                    else if (reg_addr[11:8] == 4'h2) begin
                        ch_lut[reg_addr[7:0]]   <= {!reg_wdata[7], reg_wdata[1:0]};
                        ch_role[reg_addr[7:0]]  <= reg_wdata[10:8];
                        ch_bit[reg_addr[7:0]]   <= reg_wdata[15:12];
                        ch_board[reg_addr[7:0]] <= reg_wdata[19:16];
                    end
                    else if (reg_addr[11:8] == 4'h0) begin
                        case (reg_addr[7:0])
                            8'h00: r_lat       <= reg_wdata[15:0];
                            8'h01: r_dead      <= reg_wdata[23:0];
                            8'h02: r_frac      <= reg_wdata[4:0];
                            8'h03: r_beam_k    <= reg_wdata[3:0];
                            8'h04: r_beam_thr  <= reg_wdata[23:0];
                            8'h05: r_w_beam    <= reg_wdata[19:0];
                            8'h06: r_srd_k     <= reg_wdata[4:0];
                            8'h07: r_srd_emin  <= reg_wdata[23:0];
                            8'h08: r_srd_emax  <= reg_wdata[23:0];
                            8'h09: r_srd_lo    <= reg_wdata[19:0];
                            8'h0A: r_srd_hi    <= reg_wdata[19:0];
                            8'h0B: r_veto_thr  <= reg_wdata[23:0];
                            8'h0C: r_veto_lo   <= reg_wdata[19:0];
                            8'h0D: r_veto_hi   <= reg_wdata[19:0];
                            8'h0E: r_calo_lo   <= reg_wdata[19:0];
                            8'h0F: r_calo_hi   <= reg_wdata[19:0];
                            8'h10: r_hcal_lo   <= reg_wdata[19:0];
                            8'h11: r_hcal_hi   <= reg_wdata[19:0];
                            8'h12: r_ecal_cut  <= reg_wdata[23:0];
                            8'h13: r_prs_min   <= reg_wdata[23:0];
                            8'h14: r_calib_min <= reg_wdata[23:0];
                            8'h15: r_mip_lo    <= reg_wdata[23:0];
                            8'h16: r_mip_hi    <= reg_wdata[23:0];
                            8'h17: r_hcal_thr  <= reg_wdata[23:0];
                            8'h18: r_rnd_mode  <= reg_wdata[1:0];
                            8'h19: r_rnd_param <= reg_wdata;
                            8'h1A: r_span_lo   <= reg_wdata[19:0];
                            8'h1B: r_span_hi   <= reg_wdata[19:0];
                            8'h1C: r_n_boards  <= reg_wdata[4:0];
                            8'h1D: r_guard     <= reg_wdata[19:0];
                            8'h1E: r_prescale[23:0]   <= reg_wdata[23:0];
                            8'h1F: r_prescale[47:24]  <= reg_wdata[23:0];
                            8'h20: r_prescale[71:48]  <= reg_wdata[23:0];
                            8'h21: r_prescale[95:72]  <= reg_wdata[23:0];
                            8'h22: r_prescale[119:96] <= reg_wdata[23:0];
                            8'h23: r_rnd_seed  <= reg_wdata;
                            8'h24: r_lut_k     <= reg_wdata[10:0];
                            8'h28: r_lut_shift[0] <= reg_wdata[4:0];
                            8'h29: r_lut_shift[1] <= reg_wdata[4:0];
                            8'h2A: r_lut_shift[2] <= reg_wdata[4:0];
                            8'h2B: r_lut_shift[3] <= reg_wdata[4:0];
                            default: ;
                        endcase
                    end
                end
                default: lut_mem[reg_addr[12:0] - 13'h1000] <= reg_wdata[21:0];
            endcase
        end
    end

    // ---------------------------------------------------------------- primitive buffer
    reg [53:0] buf_time [0:DEPTH-1];
    reg [7:0]  buf_ch   [0:DEPTH-1];
    reg [21:0] buf_e    [0:DEPTH-1];
    reg [AW:0] head, tail;                    // one extra bit: full when they differ only in it
    wire       full = (head[AW-1:0] == tail[AW-1:0]) && (head[AW] != tail[AW]);
    assign buf_fill = head - tail;

    // ---------------------------------------------------------------- calibration stage
    localparam [3:0] S_IDLE = 4'd0, S_SEEK = 4'd1, S_MASK = 4'd2, S_RND = 4'd3, S_EVAL0 = 4'd4,
                     S_EVAL = 4'd5, S_GSUM = 4'd6, S_DECIDE = 4'd7, S_DISCARD = 4'd8;
    reg  [3:0]  state;
    reg         p_valid;
    reg  [7:0]  p_ch;
    reg  [53:0] p_time;
    reg  [24:0] p_net;
    reg  [53:0] last_time;                    // of the last buffered primitive
    reg  [47:0] cur_tick;                     // stream complete below this tick

    wire [2:0]  p_info = ch_lut[p_ch];
    wire [10:0] cal_addr;
    wire [21:0] cal_energy;
    wire [1:0]  p_lut = p_info[1:0];
    trig_calib u_calib (
        .net(p_net), .gain(ch_gain[p_ch]), .frac(r_frac), .lut_en(p_info[2]),
        .lut_shift(r_lut_shift[p_lut]), .lut_k(r_lut_k), .lut_addr(cal_addr),
        .lut_a(lut_mem[{p_lut, cal_addr}]), .lut_b(lut_mem[{p_lut, cal_addr} + 13'd1]),
        .energy(cal_energy));

    assign in_ready  = (state == S_IDLE);
    assign adv_ready = (state == S_IDLE) && !p_valid && !in_valid;
    assign idle      = (state == S_IDLE) && !p_valid;

    always @(posedge clk) begin
        if (rst) begin
            p_valid      <= 1'b0;
            head         <= {(AW+1){1'b0}};
            last_time    <= 54'd0;
            err_overflow <= 16'd0;
            err_order    <= 16'd0;
            err_late     <= 16'd0;
        end else begin
            p_valid <= in_valid && in_ready;
            if (in_valid && in_ready) begin
                p_ch   <= in_channel;
                p_time <= in_time;
                p_net  <= in_net;
            end
            if (p_valid) begin
                if (p_time < {cur_tick, 6'd0})
                    err_late <= err_late + 16'd1;
                else if (p_time < last_time)
                    err_order <= err_order + 16'd1;
                else if (full)
                    err_overflow <= err_overflow + 16'd1;
                else begin
                    buf_time[head[AW-1:0]] <= p_time;
                    buf_ch[head[AW-1:0]]   <= p_ch;
                    buf_e[head[AW-1:0]]    <= cal_energy;
                    head      <= head + 1'b1;
                    last_time <= p_time;
                end
            end
        end
    end

    // ---------------------------------------------------------------- controller
    localparam signed [55:0] FAR_PAST = -56'sd36028797018963968;   // -2^55
    reg  [AW:0]        bp, jp, ep;            // beam scan, coincidence scan, evaluation pointers
    reg  signed [55:0] next_min;              // NEXT_MIN of 2.5
    reg  signed [55:0] t0;                    // opener time
    reg  [7:0]         scan_mask;
    reg                have_beam;
    reg  signed [55:0] beam_tref;
    reg  [47:0]        beam_issue;
    reg  signed [55:0] stop_time;             // next opener not yet due (keeps the buffer)
    reg                cand_random;
    reg  signed [55:0] cand_tref;
    reg  [47:0]        cand_issue;
    reg  [47:0]        end_tick;
    reg                busy_lvl;
    reg  [4:0]         gb;
    reg  signed [55:0] last_beam;
    reg                last_beam_valid;

    function signed [55:0] t56;
        input [53:0] t;
        begin
            t56 = {2'b00, t};
        end
    endfunction

    function [4:0] pop8;
        input [7:0] m;
        integer i;
        begin
            pop8 = 5'd0;
            for (i = 0; i < 8; i = i + 1)
                pop8 = pop8 + {4'd0, m[i]};
        end
    endfunction

    // buffer read ports (combinational)
    wire [53:0] bp_time = buf_time[bp[AW-1:0]];
    wire [2:0]  bp_role = ch_role[buf_ch[bp[AW-1:0]]];
    wire        bp_open = (bp_role == 3'd0) && ({2'b00, buf_e[bp[AW-1:0]]} >= r_beam_thr);
    wire [47:0] bp_issue = bp_time[53:6] + {32'd0, r_lat};
    wire [53:0] jp_time = buf_time[jp[AW-1:0]];
    wire [2:0]  jp_role = ch_role[buf_ch[jp[AW-1:0]]];
    wire [2:0]  jp_bit  = ch_bit[buf_ch[jp[AW-1:0]]][2:0];   // beam counters: 8-bit mask
    wire        jp_open = (jp_role == 3'd0) && ({2'b00, buf_e[jp[AW-1:0]]} >= r_beam_thr);
    wire signed [55:0] t0_end = t0 + $signed({36'd0, r_w_beam});
    wire        jp_in = t56(jp_time) < t0_end;
    wire [53:0] ep_time = buf_time[ep[AW-1:0]];
    wire [7:0]  ep_ch   = buf_ch[ep[AW-1:0]];
    wire [53:0] tl_time = buf_time[tail[AW-1:0]];

    wire signed [55:0] span_hi_abs = cand_tref + {{36{r_span_hi[19]}}, r_span_hi};
    // LATENCY in fine units; random candidates look LATENCY ticks back (T_REF = (n - LATENCY) * 64)
    wire signed [55:0] lat_fine  = $signed({34'd0, r_lat, 6'd0});
    wire signed [55:0] rnd_tref  = $signed({2'b00, rnd_fire_tick, 6'd0}) - lat_fine;
    // no later candidate has T_REF below the next opener or (adv_tick - LATENCY) * 64
    wire signed [55:0] end_tref  = $signed({2'b00, end_tick, 6'd0}) - lat_fine;
    wire signed [55:0] keep_from = ((stop_time < end_tref) ? stop_time : end_tref)
                                   + {{36{r_span_lo[19]}}, r_span_lo};

    // random generator
    wire        rnd_done, rnd_fire;
    wire [47:0] rnd_fire_tick;
    trig_random u_random (
        .clk(clk), .rst(rst), .mode(r_rnd_mode), .param(r_rnd_param), .seed(r_rnd_seed),
        .run(state == S_RND), .limit(have_beam ? beam_issue : end_tick), .done(rnd_done),
        .fire(rnd_fire), .fire_tick(rnd_fire_tick));

    // windows and sums
    wire        win_en  = (state == S_EVAL) && (ep != head) && (t56(ep_time) < span_hi_abs);
    wire        gsum_en = (state == S_GSUM) && (gb < r_n_boards);
    wire [7:0]  w_beam_mask;
    wire [15:0] w_srd_mask, w_veto_mask;
    wire [23:0] w_e_srd, w_e_veto, w_e_prs, w_e_ecal, w_e_hcal;
    trig_window u_window (
        .clk(clk), .clear(state == S_EVAL0), .en(win_en), .dt(t56(ep_time) - cand_tref),
        .role(ch_role[ep_ch]), .bitpos(ch_bit[ep_ch]), .board(ch_board[ep_ch]),
        .energy(buf_e[ep[AW-1:0]]), .gsum_en(gsum_en), .gsum_board(gb[3:0]),
        .beam_thr(r_beam_thr), .w_beam(r_w_beam), .srd_emin(r_srd_emin), .srd_emax(r_srd_emax),
        .srd_lo(r_srd_lo), .srd_hi(r_srd_hi), .veto_thr(r_veto_thr), .veto_lo(r_veto_lo),
        .veto_hi(r_veto_hi), .calo_lo(r_calo_lo), .calo_hi(r_calo_hi), .hcal_lo(r_hcal_lo),
        .hcal_hi(r_hcal_hi), .beam_mask(w_beam_mask), .srd_mask(w_srd_mask),
        .veto_mask(w_veto_mask), .e_srd(w_e_srd), .e_veto(w_e_veto), .e_prs(w_e_prs),
        .e_ecal(w_e_ecal), .e_hcal(w_e_hcal));
    wire [24:0] calo_sum = {1'b0, w_e_prs} + {1'b0, w_e_ecal};
    wire [23:0] w_e_calo = calo_sum[24] ? 24'hFFFFFF : calo_sum[23:0];

    // decision
    wire signed [55:0] since_last = cand_tref - last_beam;
    wire        pileup = last_beam_valid && (since_last < $signed({36'd0, r_guard}));
    wire [9:0]  cond;
    wire [4:0]  raw, passed;
    wire        accept;
    wire        decide = (state == S_DECIDE);
    wire [31:0] event_number;
    trig_decide u_decide (
        .beam_mask(w_beam_mask), .srd_mask(w_srd_mask), .veto_mask(w_veto_mask),
        .e_prs(w_e_prs), .e_calo(w_e_calo), .e_hcal(w_e_hcal), .is_random(cand_random),
        .pileup(pileup), .beam_k(r_beam_k), .srd_k(r_srd_k), .ecal_cut(r_ecal_cut),
        .prs_min(r_prs_min), .calib_min(r_calib_min), .mip_lo(r_mip_lo), .mip_hi(r_mip_hi),
        .hcal_thr(r_hcal_thr), .cond(cond), .raw(raw));
    trig_prescale u_prescale (
        .clk(clk), .rst(rst), .step(decide), .raw(raw), .prescale(r_prescale), .passed(passed));
    trig_gate u_gate (
        .clk(clk), .rst(rst), .step(decide), .raw(raw), .passed(passed), .issue(cand_issue),
        .busy(busy_lvl), .dead(r_dead), .accept(accept), .event_number(event_number),
        .cnt_raw(cnt_raw), .cnt_prescaled(cnt_prescaled), .cnt_accepted(cnt_accepted),
        .cnt_lost_dead(cnt_lost_dead), .cnt_lost_busy(cnt_lost_busy), .cnt_attempts(cnt_attempts),
        .cnt_lost_dead_triggers(cnt_lost_dead_triggers), .cnt_lost_busy_triggers(cnt_lost_busy_triggers));

    // live time: dead intervals from the accepted triggers, counted up to each advance end
    wire        discard_more = (tail != head) && (t56(tl_time) < keep_from);
    trig_livetime u_livetime (
        .clk(clk), .rst(rst), .dead(r_dead), .accept(decide && accept), .issue(cand_issue),
        .adv_done((state == S_DISCARD) && !discard_more), .to(end_tick), .busy(busy_lvl),
        .cnt_ticks(cnt_ticks), .cnt_dead_ticks(cnt_dead_ticks), .cnt_busy_ticks(cnt_busy_ticks),
        .cnt_live_ticks(cnt_live_ticks));

    always @(posedge clk) begin
        out_valid <= 1'b0;
        if (rst) begin
            state           <= S_IDLE;
            tail            <= {(AW+1){1'b0}};
            next_min        <= FAR_PAST;
            have_beam       <= 1'b0;
            last_beam       <= 56'sd0;
            last_beam_valid <= 1'b0;
            cur_tick        <= 48'd0;
            end_tick        <= 48'd0;
            busy_lvl        <= 1'b0;
        end else begin
            case (state)
                S_IDLE: if (adv_valid && adv_ready) begin
                    end_tick <= adv_tick;
                    busy_lvl <= adv_busy;
                    bp       <= tail;
                    state    <= S_SEEK;
                end
                S_SEEK: begin   // next opener at or after NEXT_MIN
                    if (bp == head) begin
                        stop_time <= 56'sh7FFFFFFFFFFFFF;
                        state     <= S_RND;
                    end else if (!bp_open || t56(bp_time) < next_min) begin
                        bp <= bp + 1'b1;
                    end else if (bp_issue >= end_tick) begin
                        stop_time <= t56(bp_time);
                        state     <= S_RND;
                    end else begin
                        t0        <= t56(bp_time);
                        jp        <= bp;
                        scan_mask <= 8'd0;
                        state     <= S_MASK;
                    end
                end
                S_MASK: begin   // counters in [t0, t0 + W_BEAM)
                    if (jp != head && jp_in) begin
                        if (jp_open) scan_mask[jp_bit] <= 1'b1;
                        jp <= jp + 1'b1;
                    end else if (pop8(scan_mask) >= {1'b0, r_beam_k}) begin
                        have_beam  <= 1'b1;
                        beam_tref  <= t0;
                        beam_issue <= t0[53:6] + {32'd0, r_lat};
                        next_min   <= t0_end;
                        bp         <= jp;
                        state      <= S_RND;
                    end else begin
                        next_min <= t0 + 56'sd1;
                        bp       <= bp + 1'b1;
                        state    <= S_SEEK;
                    end
                end
                S_RND: begin    // random candidates before the beam candidate / the end
                    if (rnd_fire && rnd_fire_tick < {32'd0, r_lat}) begin
                        // no stream LATENCY ticks back yet: no candidate (2.8); the generator
                        // has stepped past the fire, stay here
                    end else if (rnd_fire) begin
                        cand_random <= 1'b1;
                        cand_issue  <= rnd_fire_tick;
                        cand_tref   <= rnd_tref;
                        state       <= S_EVAL0;
                    end else if (rnd_done) begin
                        if (have_beam) begin
                            have_beam   <= 1'b0;
                            cand_random <= 1'b0;
                            cand_issue  <= beam_issue;
                            cand_tref   <= beam_tref;
                            state       <= S_EVAL0;
                        end else begin
                            state <= S_DISCARD;
                        end
                    end
                end
                S_EVAL0: begin
                    ep    <= tail;
                    state <= S_EVAL;
                end
                S_EVAL: begin
                    if (win_en) ep <= ep + 1'b1;
                    else begin
                        gb    <= 5'd0;
                        state <= S_GSUM;
                    end
                end
                S_GSUM: begin
                    if (gsum_en) gb <= gb + 5'd1;
                    else state <= S_DECIDE;
                end
                S_DECIDE: begin
                    if (!cand_random) begin
                        last_beam       <= cand_tref;
                        last_beam_valid <= 1'b1;
                    end
                    if (accept) begin
                        out_valid     <= 1'b1;
                        out_event     <= event_number;
                        out_timestamp <= cand_issue;
                        out_ref_time  <= cand_tref[53:0];
                        out_word      <= {16'd0, 3'd0, raw, 3'd0, passed};
                        out_cond      <= cond;
                        out_beam_mask <= w_beam_mask;
                        out_srd_mask  <= w_srd_mask;
                        out_veto_mask <= w_veto_mask;
                        out_e_prs     <= w_e_prs;
                        out_e_ecal    <= w_e_ecal;
                        out_e_calo    <= w_e_calo;
                        out_e_hcal    <= w_e_hcal;
                        out_e_srd     <= w_e_srd;
                        out_e_veto    <= w_e_veto;
                    end
                    state <= cand_random ? S_RND : S_SEEK;
                end
                S_DISCARD: begin  // drop what no later candidate can need
                    if (discard_more) tail <= tail + 1'b1;
                    else begin
                        cur_tick <= end_tick;
                        state    <= S_IDLE;
                    end
                end
                default: state <= S_IDLE;
            endcase
        end
    end
endmodule

`default_nettype wire
