// trig_gate: dead time and busy gate, event number and scalers, docs/firmware-spec.md 2.10, 2.12.
//
// For a candidate (step) with passed mask P != 0 at tick ISSUE:
//   ISSUE < DEAD_UNTIL -> lost to dead time; else busy -> lost to busy;
//   else accepted: EVENT_NUMBER += 1, DEAD_UNTIL = ISSUE + DEAD (non-paralysable).
// accept/event are combinational in the step cycle. Scalers: per type raw, prescaled,
// accepted, lost_dead, lost_busy (u32 each, packed 32*t); per candidate attempts, triggers,
// lost_dead_triggers, lost_busy_triggers.
`default_nettype none

module trig_gate (
    input  wire          clk,
    input  wire          rst,
    input  wire          step,
    input  wire [4:0]    raw,
    input  wire [4:0]    passed,
    input  wire [47:0]   issue,
    input  wire          busy,
    input  wire [23:0]   dead,
    output wire          accept,
    output reg  [31:0]   event_number,     // of the next accepted trigger
    output reg  [159:0]  cnt_raw,
    output reg  [159:0]  cnt_prescaled,
    output reg  [159:0]  cnt_accepted,
    output reg  [159:0]  cnt_lost_dead,
    output reg  [159:0]  cnt_lost_busy,
    output reg  [31:0]   cnt_attempts,
    output reg  [31:0]   cnt_lost_dead_triggers,
    output reg  [31:0]   cnt_lost_busy_triggers
);
    reg  [48:0] dead_until;                // tick; 0 = no dead time yet (ISSUE >= 0)
    wire        any  = passed != 5'd0;
    wire        is_dead = {1'b0, issue} < dead_until;
    wire        lost_dead = any && is_dead;
    wire        lost_busy = any && !is_dead && busy;
    assign accept = any && !is_dead && !busy;

    integer t;
    always @(posedge clk) begin
        if (rst) begin
            dead_until    <= 49'd0;
            event_number  <= 32'd0;
            cnt_raw       <= 160'd0;
            cnt_prescaled <= 160'd0;
            cnt_accepted  <= 160'd0;
            cnt_lost_dead <= 160'd0;
            cnt_lost_busy <= 160'd0;
            cnt_attempts  <= 32'd0;
            cnt_lost_dead_triggers <= 32'd0;
            cnt_lost_busy_triggers <= 32'd0;
        end else if (step) begin
            for (t = 0; t < 5; t = t + 1) begin
                if (raw[t])    cnt_raw[32*t +: 32]       <= cnt_raw[32*t +: 32] + 32'd1;
                if (passed[t]) cnt_prescaled[32*t +: 32] <= cnt_prescaled[32*t +: 32] + 32'd1;
                if (passed[t] && accept)    cnt_accepted[32*t +: 32]  <= cnt_accepted[32*t +: 32] + 32'd1;
                if (passed[t] && lost_dead) cnt_lost_dead[32*t +: 32] <= cnt_lost_dead[32*t +: 32] + 32'd1;
                if (passed[t] && lost_busy) cnt_lost_busy[32*t +: 32] <= cnt_lost_busy[32*t +: 32] + 32'd1;
            end
            if (any) cnt_attempts <= cnt_attempts + 32'd1;
            if (lost_dead) cnt_lost_dead_triggers <= cnt_lost_dead_triggers + 32'd1;
            if (lost_busy) cnt_lost_busy_triggers <= cnt_lost_busy_triggers + 32'd1;
            if (accept) begin
                event_number <= event_number + 32'd1;
                dead_until   <= {1'b0, issue} + {25'd0, dead};
            end
        end
    end
endmodule

`default_nettype wire
