// pulse_finder_bank: NCH pulse_finder channels sharing clock, framing and valid, as on one
// digitizer board (12 inputs on the Waveboard). Per-channel samples and registers are packed
// buses, channel ch in bits [ch*W +: W]. Each channel has its own record bus; out_valid has
// one bit per channel. The testbench uses it to simulate many channel-windows per clock.
// Samples and record fields are padded to whole bytes (8/16/32/64 bits) so that a test bench
// or a DMA engine can move a bus as an array of little-endian integers; the padding is zero
// (integral_net is sign-extended).
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
            wire [9:0] w_quality;
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
            assign out_quality[ch*16 +: 16] = {6'd0, w_quality};
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
                .out_valid(out_valid[ch]),
                .out_window(out_window[ch*16 +: 16]),
                .out_pulse_index(w_pulse_index),
                .out_crossing(w_crossing),
                .out_coarse(w_coarse),
                .out_fine(w_fine),
                .out_time(w_time),
                .out_peak(w_peak),
                .out_integral(w_integral),
                .out_integral_net(w_integral_net),
                .out_pedestal(w_pedestal),
                .out_n_over(w_n_over),
                .out_quality(w_quality),
                .busy(ch_busy[ch]),
                .err_overflow(ch_err[ch])
            );
        end
    endgenerate

endmodule

`default_nettype wire
