// trig_decide: condition bits (2.6) and raw trigger types (2.7), combinational.
//
// Every threshold is ">=" except the ECAL cut ("<") and the MIP window's upper edge ("<").
`default_nettype none

module trig_decide (
    input  wire [7:0]   beam_mask,
    input  wire [15:0]  srd_mask,
    input  wire [15:0]  veto_mask,
    input  wire [23:0]  e_prs,
    input  wire [23:0]  e_calo,
    input  wire [23:0]  e_hcal,
    input  wire         is_random,   // candidate from the random generator (2.8)
    input  wire         pileup,      // beam candidate inside PILEUP_GUARD of the previous one
    input  wire [3:0]   beam_k,
    input  wire [4:0]   srd_k,
    input  wire [23:0]  ecal_cut,
    input  wire [23:0]  prs_min,
    input  wire [23:0]  calib_min,
    input  wire [23:0]  mip_lo,
    input  wire [23:0]  mip_hi,
    input  wire [23:0]  hcal_thr,
    output wire [9:0]   cond,
    output wire [4:0]   raw
);
    function [4:0] popcount16;
        input [15:0] m;
        integer i;
        begin
            popcount16 = 5'd0;
            for (i = 0; i < 16; i = i + 1)
                popcount16 = popcount16 + {4'd0, m[i]};
        end
    endfunction

    wire c_beam  = popcount16({8'd0, beam_mask}) >= {1'b0, beam_k};
    wire c_srd   = popcount16(srd_mask) >= srd_k;
    wire c_veto  = veto_mask != 16'd0;
    wire c_ecal_low = e_calo < ecal_cut;
    wire c_prs   = e_prs >= prs_min;
    wire c_calib = e_calo >= calib_min;
    wire c_mip   = (e_calo >= mip_lo) && (e_calo < mip_hi);
    wire c_hcal  = e_hcal >= hcal_thr;
    wire c_pile  = !is_random && pileup;

    assign cond = {c_pile, is_random, c_hcal, c_mip, c_calib, c_prs, c_ecal_low, c_veto, c_srd, c_beam};

    // bit 0 PHYSICS, 1 BEAM, 2 RANDOM, 3 CALIBRATION, 4 MUON
    wire t_physics = c_beam && c_srd && c_ecal_low && c_prs && !c_veto && !c_pile;
    wire t_muon    = c_beam && c_mip && (c_hcal || c_veto);
    assign raw = is_random ? 5'b00100
                           : {t_muon, c_beam && c_calib, 1'b0, c_beam, t_physics};
endmodule

`default_nettype wire
