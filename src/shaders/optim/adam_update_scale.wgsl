// adam_update_scale.wgsl: the loss scaler's update after an Adam step (PyTorch's _amp_update_scale_ with
// GradScaler's defaults: growth 2 after 2,000 clean steps in a row, back-off 0.5), and the step count
// (engine/ops/optim/loss_scale.rs).
//
// Math:     state = (found, tracker, steps, e), scale = 2^e:
//           found:  e = max(e - 1, min_exponent), tracker = 0            (adam.wgsl skipped the step)
//           else:   steps += 1; tracker += 1; when tracker = interval: tracker = 0, e = min(e + 1,
//                   max_exponent)
//           then found = 0 (the next step's check starts clean) and scale[0] = 2^e (what the next loss is
//           multiplied by). The exponent bounds keep 2^e and 2^-e normal floats (module doc of
//           loss_scale.rs: where PyTorch's float scale could go further).
// Threads:  one invocation.
// Bindings: 0 state (read_write) (4 words) | 1 scale (read_write) (1) | 2 params (uniform)
// CPU reference: engine::ops::optim::loss_scale::ScaleState::cpu_update.

const WG: u32 = 1u;

struct Params {
    interval: u32,
    min_exponent: i32,
    max_exponent: i32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> state: array<u32>;
@group(0) @binding(1) var<storage, read_write> scale: array<f32>;
@group(0) @binding(2) var<uniform>             params: Params;

@compute @workgroup_size(WG)
fn update_scale() {
    var e = bitcast<i32>(state[3]);
    if (state[0] != 0u) {
        e = max(e - 1, params.min_exponent);
        state[1] = 0u;
    } else {
        state[2] = state[2] + 1u;
        let tracker = state[1] + 1u;
        if (tracker >= params.interval) {
            e = min(e + 1, params.max_exponent);
            state[1] = 0u;
        } else {
            state[1] = tracker;
        }
    }
    state[0] = 0u;
    state[3] = bitcast<u32>(e);
    scale[0] = ldexp(1.0, e);
}
