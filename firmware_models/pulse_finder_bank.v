// pulse_finder_bank: NCH pulse_finder channels sharing clock, framing and valid, as on one
// digitizer board (12 inputs on the Waveboard). Per-channel samples and registers are packed
// buses, channel ch in bits [ch*W +: W]. Each channel has its own record bus; out_valid has
// one bit per channel. The testbench uses it to simulate many channel-windows per clock.
// Samples and record fields are padded to whole bytes (8/16/32/64 bits) so that a test bench
// or a DMA engine can move a bus as an array of little-endian integers; the padding is zero
// (integral_net is sign-extended).
// Each lane holds both pulse finders: reg_algorithm selects the one whose record bus, busy
// and error drive the lane (docs/firmware-spec.md 1.13) and enables the fADC250 engine's
// capture; both count every window (the record's window id). Change it between windows,
// like the other registers.
`default_nettype none

module pulse_finder_bank #(
    parameter integer NCH = 16
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 in_valid,
    input  wire                 in_first,
    input  wire                 in_last,
    input  wire [NCH*16-1:0]    in_sample,     // bits 15:14 of each lane unused
    input  wire [47:0]          in_index0,
    input  wire [NCH*14-1:0]    reg_thr,
    input  wire [NCH*6-1:0]     reg_nsb,
    input  wire [NCH*9-1:0]     reg_nsa,
    input  wire [NCH*4-1:0]     reg_nsat,
    input  wire [NCH*3-1:0]     reg_nped_log2,
    input  wire [NCH*14-1:0]    reg_maxped,
    input  wire [NCH*4-1:0]     reg_max_pulses,
    input  wire [NCH-1:0]       reg_ped_mode,
    input  wire [NCH*14-1:0]    reg_ped_cfg,
    input  wire [NCH-1:0]       reg_algorithm, // per lane: 0 POKER (pulse_finder), 1 fADC250 v3
    output wire [NCH-1:0]       out_valid,
    output wire [NCH*16-1:0]    out_window,
    output wire [NCH*8-1:0]     out_pulse_index,
    output wire [NCH*64-1:0]    out_crossing,
    output wire [NCH*64-1:0]    out_coarse,
    output wire [NCH*8-1:0]    out_fine,
    output wire [NCH*64-1:0]    out_time,
    output wire [NCH*16-1:0]    out_peak,
    output wire [NCH*32-1:0]    out_integral,
    output wire [NCH*32-1:0]    out_integral_net,
    output wire [NCH*32-1:0]    out_pedestal,
    output wire [NCH*16-1:0]    out_n_over,
    output wire [NCH*16-1:0]    out_quality,
    output wire                 busy,
    output wire                 err_overflow
);

    /* verilator lint_off UNUSEDSIGNAL */
    wire [NCH*16-1:0] in_sample_lanes = in_sample;   // the two padding bits per lane are unused
    /* verilator lint_on UNUSEDSIGNAL */
    wire [NCH-1:0] ch_busy;
    wire [NCH-1:0] ch_err;
    assign busy = |ch_busy;
    assign err_overflow = |ch_err;

    genvar ch;
    generate
        for (ch = 0; ch < NCH; ch = ch + 1) begin : g_ch
            wire [3:0] w_pulse_index;
            wire [47:0] w_crossing;
            wire [47:0] w_coarse;
            wire [5:0] w_fine;
            wire [53:0] w_time;
            wire [13:0] w_peak;
            wire [23:0] w_integral;
            wire [24:0] w_integral_net;
            wire [18:0] w_pedestal;
            wire [9:0] w_n_over;
            wire [10:0] w_quality;
            wire alg = reg_algorithm[ch];
            assign out_pulse_index[ch*8 +: 8] = {4'd0, w_pulse_index};
            assign out_crossing[ch*64 +: 64] = {16'd0, w_crossing};
            assign out_coarse[ch*64 +: 64] = {16'd0, w_coarse};
            assign out_fine[ch*8 +: 8] = {2'd0, w_fine};
            assign out_time[ch*64 +: 64] = {10'd0, w_time};
            assign out_peak[ch*16 +: 16] = {2'd0, w_peak};
            assign out_integral[ch*32 +: 32] = {8'd0, w_integral};
            assign out_integral_net[ch*32 +: 32] = {{7{w_integral_net[24]}}, w_integral_net};
            assign out_pedestal[ch*32 +: 32] = {13'd0, w_pedestal};
            assign out_n_over[ch*16 +: 16] = {6'd0, w_n_over};
            assign out_quality[ch*16 +: 16] = {5'd0, w_quality};
            // POKER core outputs, fADC250 core outputs, and the lane's choice
            wire p_valid, p_busy, p_err, f_valid, f_busy, f_err;
            wire [15:0] p_window, f_window;
            wire [3:0] p_pulse_index, f_pulse_index;
            wire [47:0] p_crossing, f_crossing, p_coarse, f_coarse;
            wire [5:0] p_fine, f_fine;
            wire [53:0] p_time, f_time;
            wire [13:0] p_peak, f_peak;
            wire [23:0] p_integral, f_integral;
            wire [24:0] p_integral_net, f_integral_net;
            wire [18:0] p_pedestal, f_pedestal;
            wire [9:0] p_n_over, f_n_over;
            wire [9:0] p_quality;
            wire [10:0] f_quality;
            assign out_valid[ch] = alg ? f_valid : p_valid;
            assign out_window[ch*16 +: 16] = alg ? f_window : p_window;
            assign w_pulse_index = alg ? f_pulse_index : p_pulse_index;
            assign w_crossing = alg ? f_crossing : p_crossing;
            assign w_coarse = alg ? f_coarse : p_coarse;
            assign w_fine = alg ? f_fine : p_fine;
            assign w_time = alg ? f_time : p_time;
            assign w_peak = alg ? f_peak : p_peak;
            assign w_integral = alg ? f_integral : p_integral;
            assign w_integral_net = alg ? f_integral_net : p_integral_net;
            assign w_pedestal = alg ? f_pedestal : p_pedestal;
            assign w_n_over = alg ? f_n_over : p_n_over;
            assign w_quality = alg ? f_quality : {1'b0, p_quality};
            assign ch_busy[ch] = alg ? f_busy : p_busy;
            assign ch_err[ch] = alg ? f_err : p_err;
            pulse_finder_fadc250 u_fadc (
                .clk(clk),
                .rst(rst),
                .in_valid(in_valid),
                .in_enable(alg),
                .in_first(in_first),
                .in_last(in_last),
                .in_sample(in_sample_lanes[ch*16 +: 13]),
                .in_index0(in_index0),
                .reg_thr(reg_thr[ch*14 +: 14]),
                .reg_nsb(reg_nsb[ch*6 +: 6]),
                .reg_nsa(reg_nsa[ch*9 +: 9]),
                .reg_nsat(reg_nsat[ch*4 +: 4]),
                .reg_nped_log2(reg_nped_log2[ch*3 +: 3]),
                .reg_maxped(reg_maxped[ch*14 +: 14]),
                .out_valid(f_valid),
                .out_window(f_window),
                .out_pulse_index(f_pulse_index),
                .out_crossing(f_crossing),
                .out_coarse(f_coarse),
                .out_fine(f_fine),
                .out_time(f_time),
                .out_peak(f_peak),
                .out_integral(f_integral),
                .out_integral_net(f_integral_net),
                .out_pedestal(f_pedestal),
                .out_n_over(f_n_over),
                .out_quality(f_quality),
                .busy(f_busy),
                .err_overflow(f_err)
            );
            pulse_finder u_pf (
                .clk(clk),
                .rst(rst),
                .in_valid(in_valid),
                .in_first(in_first),
                .in_last(in_last),
                .in_sample(in_sample_lanes[ch*16 +: 14]),
                .in_index0(in_index0),
                .reg_thr(reg_thr[ch*14 +: 14]),
                .reg_nsb(reg_nsb[ch*6 +: 6]),
                .reg_nsa(reg_nsa[ch*9 +: 9]),
                .reg_nsat(reg_nsat[ch*4 +: 4]),
                .reg_nped_log2(reg_nped_log2[ch*3 +: 3]),
                .reg_maxped(reg_maxped[ch*14 +: 14]),
                .reg_max_pulses(reg_max_pulses[ch*4 +: 4]),
                .reg_ped_mode(reg_ped_mode[ch]),
                .reg_ped_cfg(reg_ped_cfg[ch*14 +: 14]),
                .out_valid(p_valid),
                .out_window(p_window),
                .out_pulse_index(p_pulse_index),
                .out_crossing(p_crossing),
                .out_coarse(p_coarse),
                .out_fine(p_fine),
                .out_time(p_time),
                .out_peak(p_peak),
                .out_integral(p_integral),
                .out_integral_net(p_integral_net),
                .out_pedestal(p_pedestal),
                .out_n_over(p_n_over),
                .out_quality(p_quality),
                .busy(p_busy),
                .err_overflow(p_err)
            );
        end
    endgenerate

endmodule

`default_nettype wire
