// trig_livetime: the live-time counters of docs/firmware-spec.md 2.12.
//
// Per run (cleared at rst), valid whenever the trigger is idle after an advance to tick T:
//   cnt_ticks      = T                      ticks elapsed
//   cnt_dead_ticks = ticks in [0, T) inside [ISSUE, ISSUE + DEAD) of some accepted trigger
//   cnt_busy_ticks = ticks in [0, T) with BUSY
//   cnt_live_ticks = ticks in [0, T) neither dead nor busy
// all u48 (the width of a tick; 2^48 ticks = 13 days at 250 MHz, so they never wrap in a run).
//
// Dead time is non-paralysable (2.10): an accepted trigger's interval [ISSUE, ISSUE + DEAD)
// ends at DEAD_UNTIL <= the next accepted ISSUE, so the intervals are disjoint and every one
// but the last accepted one lies wholly below any later advance end. The dead ticks below T
// are therefore dead_closed (DEAD per accepted trigger before the last one) plus the last
// interval clipped at T; the rest of that interval is counted by the advances that reach it
// (dead time straddling advance ends). BUSY is one level per advance (adv_busy), so an
// advance is either all busy (no live tick) or live except its dead ticks.
//
// accept: one clock per accepted trigger (issue = its ISSUE tick, ISSUE >= the previous
// advance end); adv_done: one clock at the end of each advance (to = adv_tick >= cnt_ticks,
// busy = adv_busy); never both in one clock.
`default_nettype none

module trig_livetime (
    input  wire          clk,
    input  wire          rst,
    input  wire [23:0]   dead,             // DEAD register, ticks
    input  wire          accept,
    input  wire [47:0]   issue,
    input  wire          adv_done,
    input  wire [47:0]   to,
    input  wire          busy,
    output reg  [47:0]   cnt_ticks,
    output reg  [47:0]   cnt_dead_ticks,
    output reg  [47:0]   cnt_busy_ticks,
    output reg  [47:0]   cnt_live_ticks
);
    reg         have_accept;               // a trigger has been accepted in this run
    reg  [47:0] last_issue;                // ISSUE of the last accepted trigger
    reg  [47:0] dead_closed;               // dead ticks of the accepted triggers before it

    wire [48:0] last_end  = {1'b0, last_issue} + {25'd0, dead};          // its DEAD_UNTIL
    wire [47:0] clip_end  = (last_end < {1'b0, to}) ? last_end[47:0] : to;
    wire [47:0] open_dead = have_accept ? clip_end - last_issue : 48'd0;
    wire [47:0] dead_now  = dead_closed + open_dead;                     // dead ticks below `to`
    wire [47:0] adv_len   = to - cnt_ticks;                              // ticks of this advance
    wire [47:0] adv_dead  = dead_now - cnt_dead_ticks;                   // dead ticks among them
    wire [47:0] adv_live  = busy ? 48'd0 : adv_len - adv_dead;

    always @(posedge clk) begin
        if (rst) begin
            have_accept    <= 1'b0;
            last_issue     <= 48'd0;
            dead_closed    <= 48'd0;
            cnt_ticks      <= 48'd0;
            cnt_dead_ticks <= 48'd0;
            cnt_busy_ticks <= 48'd0;
            cnt_live_ticks <= 48'd0;
        end else begin
            if (accept) begin
                if (have_accept) dead_closed <= dead_closed + {24'd0, dead};
                have_accept <= 1'b1;
                last_issue  <= issue;
            end
            if (adv_done) begin
                cnt_ticks      <= to;
                cnt_dead_ticks <= dead_now;
                if (busy) cnt_busy_ticks <= cnt_busy_ticks + adv_len;
                cnt_live_ticks <= cnt_live_ticks + adv_live;
            end
        end
    end
endmodule

`default_nettype wire
