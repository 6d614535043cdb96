// trig_prescale: one prescaler per trigger type, docs/firmware-spec.md 2.9.
//
// For every candidate (step), each type t with its raw bit set and PRESCALE[t] != 0 counts
// PC[t] += 1; on reaching PRESCALE[t] the counter returns to 0 and the type passes. The
// passed mask is combinational from the current counters (valid in the step cycle).
// Counters sit before the dead-time gate: every raw occurrence counts.
`default_nettype none

module trig_prescale (
    input  wire          clk,
    input  wire          rst,
    input  wire          step,
    input  wire [4:0]    raw,
    input  wire [119:0]  prescale,     // PRESCALE[t] = prescale[24*t +: 24]
    output wire [4:0]    passed
);
    reg [23:0] pc [0:4];
    genvar t;
    generate
        for (t = 0; t < 5; t = t + 1) begin : g_type
            wire [23:0] factor = prescale[24*t +: 24];
            wire        counts = raw[t] && (factor != 24'd0);
            wire [24:0] next   = {1'b0, pc[t]} + 25'd1;
            assign passed[t]   = counts && (next >= {1'b0, factor});
            always @(posedge clk) begin
                if (rst)
                    pc[t] <= 24'd0;
                else if (step && counts)
                    pc[t] <= passed[t] ? 24'd0 : next[23:0];
            end
        end
    endgenerate
endmodule

`default_nettype wire
