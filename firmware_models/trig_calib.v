// trig_calib: channel energy of one primitive, docs/firmware-spec.md 2.3 (combinational).
//
//   E = NET <= 0 ? 0 : sat_22((NET * GAIN) >> F)
//   with a saturation LUT (lut_en): i = E >> S; i >= K ? L[K] : L[i] + (((L[i+1]-L[i]) * (E - (i << S))) >> S)
//
// The LUT memory sits outside: this block drives lut_addr (= min(i, K)) and reads
// lut_a = L[lut_addr], lut_b = L[lut_addr + 1] back in the same cycle.
`default_nettype none

module trig_calib (
    input  wire signed [24:0] net,        // INTEGRAL_NET, s25
    input  wire [23:0]        gain,       // GAIN[ch], u24
    input  wire [4:0]         frac,       // F
    input  wire               lut_en,     // LUT_ID[ch] >= 0
    input  wire [4:0]         lut_shift,  // LUT_SHIFT[LUT_ID[ch]]
    input  wire [10:0]        lut_k,      // K (segments)
    output wire [10:0]        lut_addr,
    input  wire [21:0]        lut_a,
    input  wire [21:0]        lut_b,
    output wire [21:0]        energy      // E, u22, LSB 1/16 MeV
);
    wire        net_pos = !net[24] && (net[23:0] != 24'd0);
    wire [47:0] prod    = net[23:0] * gain;              // < 2^48 for a positive s25
    wire [47:0] shifted = prod >> frac;
    wire [21:0] e_lin   = !net_pos ? 22'd0 : ((shifted[47:22] != 26'd0) ? 22'h3FFFFF : shifted[21:0]);

    wire [21:0] idx     = e_lin >> lut_shift;
    wire        beyond  = idx >= {11'd0, lut_k};
    assign lut_addr     = beyond ? lut_k : idx[10:0];
    wire [21:0] rem     = e_lin - (idx << lut_shift);    // E - (i << S), < 2^S
    wire signed [22:0] diff  = $signed({1'b0, lut_b}) - $signed({1'b0, lut_a});
    wire signed [45:0] dprod = diff * $signed({1'b0, rem});
    wire signed [45:0] step  = dprod >>> lut_shift;
    wire signed [46:0] interp = $signed({25'd0, lut_a}) + {step[45], step};
    wire [21:0] e_lut   = beyond ? lut_a
                        : (interp[46] ? 22'd0 : ((interp[45:22] != 24'd0) ? 22'h3FFFFF : interp[21:0]));
    assign energy       = lut_en ? e_lut : e_lin;
endmodule

`default_nettype wire
