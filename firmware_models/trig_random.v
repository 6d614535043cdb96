// trig_random: random trigger generator, docs/firmware-spec.md 2.8.
//
// One generator step per tick from tick 0. The controller runs it (run) up to a tick limit
// (exclusive): each run cycle advances `tick`, and `fire` says that the step of this cycle
// fires at `fire_tick` (a random candidate). Poisson (mode 1): xorshift32, one tick per
// clock. Periodic (mode 2): the counter C jumps to the next fire or to the limit in one
// clock. Off (mode 0): the tick jumps to the limit. `done`: tick >= limit.
`default_nettype none

module trig_random (
    input  wire          clk,
    input  wire          rst,
    input  wire [1:0]    mode,
    input  wire [31:0]   param,     // Poisson: RND_THR; periodic: RND_PERIOD (>= 1)
    input  wire [31:0]   seed,      // RND_SEED (!= 0), loaded at rst
    input  wire          run,
    input  wire [47:0]   limit,
    output wire          done,
    output wire          fire,
    output wire [47:0]   fire_tick
);
    reg  [47:0] tick;               // ticks stepped so far
    reg  [31:0] x;
    reg  [31:0] count;
    wire [31:0] x1 = x  ^ (x << 13);
    wire [31:0] x2 = x1 ^ (x1 >> 17);
    wire [31:0] xn = x2 ^ (x2 << 5);
    wire [47:0] left   = limit - tick;                        // ticks left (when !done)
    wire [31:0] to_go  = param - 32'd1 - count;               // periodic: ticks to the next fire
    wire        p_fire = {16'd0, to_go} < left;
    assign done      = tick >= limit;
    assign fire      = !done && ((mode == 2'd1) ? (xn < param) : (mode == 2'd2) ? p_fire : 1'b0);
    assign fire_tick = (mode == 2'd2) ? tick + {16'd0, to_go} : tick;

    always @(posedge clk) begin
        if (rst) begin
            x     <= seed;
            count <= 32'd0;
            tick  <= 48'd0;
        end else if (run && !done) begin
            case (mode)
                2'd1: begin
                    x    <= xn;
                    tick <= tick + 48'd1;
                end
                2'd2: begin
                    if (p_fire) begin
                        count <= 32'd0;
                        tick  <= fire_tick + 48'd1;
                    end else begin
                        count <= count + left[31:0];
                        tick  <= limit;
                    end
                end
                default: tick <= limit;
            endcase
        end
    end
endmodule

`default_nettype wire
