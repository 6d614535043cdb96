// trig_window: masks, tags and sums of one decision, docs/firmware-spec.md 2.4.
//
// The controller clears it (clear), then presents every buffered primitive with
// dt = TIME - T_REF in time order, one per clock (en); each is tested against the window of
// its role: beam counter (coincidence mask), SRD tag (k-of-n energy band), VETO
// (anti-coincidence mask), and the per-board partial sums PART[b][g] (pre-shower, ECAL,
// HCAL; u24 saturating, one adder set per board as on the boards). The global sums are then
// formed by the trigger processor over b = 0 .. N_BOARDS-1 in board order, one board per
// clock (gsum_en, gsum_board).
`default_nettype none

module trig_window #(
    parameter integer NB = 16           // boards (board field of the channel table: 4 bits)
) (
    input  wire               clk,
    input  wire               clear,
    input  wire               en,
    input  wire signed [55:0] dt,
    input  wire [2:0]         role,
    input  wire [3:0]         bitpos,
    input  wire [3:0]         board,
    input  wire [21:0]        energy,
    input  wire               gsum_en,
    input  wire [3:0]         gsum_board,
    // registers (2.2)
    input  wire [23:0]        beam_thr,
    input  wire [19:0]        w_beam,
    input  wire [23:0]        srd_emin,
    input  wire [23:0]        srd_emax,
    input  wire signed [19:0] srd_lo,
    input  wire signed [19:0] srd_hi,
    input  wire [23:0]        veto_thr,
    input  wire signed [19:0] veto_lo,
    input  wire signed [19:0] veto_hi,
    input  wire signed [19:0] calo_lo,
    input  wire signed [19:0] calo_hi,
    input  wire signed [19:0] hcal_lo,
    input  wire signed [19:0] hcal_hi,
    // results
    output reg  [7:0]         beam_mask,
    output reg  [15:0]        srd_mask,
    output reg  [15:0]        veto_mask,
    output reg  [23:0]        e_srd,
    output reg  [23:0]        e_veto,
    output reg  [23:0]        e_prs,
    output reg  [23:0]        e_ecal,
    output reg  [23:0]        e_hcal
);
    localparam [23:0] SMAX = 24'hFFFFFF;

    function [23:0] sat_add;   // sat_24(a + b)
        input [23:0] a;
        input [23:0] b;
        reg   [24:0] s;
        begin
            s = {1'b0, a} + {1'b0, b};
            sat_add = s[24] ? SMAX : s[23:0];
        end
    endfunction

    function in_win;           // LO <= dt < HI
        input signed [55:0] d;
        input signed [19:0] lo;
        input signed [19:0] hi;
        begin
            in_win = (d >= $signed({{36{lo[19]}}, lo})) && (d < $signed({{36{hi[19]}}, hi}));
        end
    endfunction

    wire [23:0] e24 = {2'b00, energy};
    wire win_beam = (dt >= 56'sd0) && (dt < $signed({36'd0, w_beam}));
    wire win_srd  = in_win(dt, srd_lo, srd_hi);
    wire win_veto = in_win(dt, veto_lo, veto_hi);
    wire win_calo = in_win(dt, calo_lo, calo_hi);
    wire win_hcal = in_win(dt, hcal_lo, hcal_hi);
    wire srd_band = (e24 >= srd_emin) && (e24 <= srd_emax);

    reg [23:0] part_prs  [0:NB-1];
    reg [23:0] part_ecal [0:NB-1];
    reg [23:0] part_hcal [0:NB-1];
    integer b;

    always @(posedge clk) begin
        if (clear) begin
            beam_mask <= 8'd0;
            srd_mask  <= 16'd0;
            veto_mask <= 16'd0;
            e_srd     <= 24'd0;
            e_veto    <= 24'd0;
            e_prs     <= 24'd0;
            e_ecal    <= 24'd0;
            e_hcal    <= 24'd0;
            for (b = 0; b < NB; b = b + 1) begin
                part_prs[b]  <= 24'd0;
                part_ecal[b] <= 24'd0;
                part_hcal[b] <= 24'd0;
            end
        end else if (en) begin
            case (role)
                3'd0: if (win_beam && e24 >= beam_thr) beam_mask[bitpos[2:0]] <= 1'b1;
                3'd1: if (win_srd) begin
                    e_srd <= sat_add(e_srd, e24);
                    if (srd_band) srd_mask[bitpos] <= 1'b1;
                end
                3'd2: if (win_calo) part_prs[board]  <= sat_add(part_prs[board], e24);
                3'd3: if (win_calo) part_ecal[board] <= sat_add(part_ecal[board], e24);
                3'd4: if (win_veto) begin
                    e_veto <= sat_add(e_veto, e24);
                    if (e24 >= veto_thr) veto_mask[bitpos] <= 1'b1;
                end
                3'd5: if (win_hcal) part_hcal[board] <= sat_add(part_hcal[board], e24);
                default: ;
            endcase
        end else if (gsum_en) begin
            e_prs  <= sat_add(e_prs,  part_prs[gsum_board]);
            e_ecal <= sat_add(e_ecal, part_ecal[gsum_board]);
            e_hcal <= sat_add(e_hcal, part_hcal[gsum_board]);
        end
    end
endmodule

`default_nettype wire
