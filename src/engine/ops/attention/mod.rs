//! # Temporal attention on a GPU: the lesson
//!
//! Start here. This family holds the three kernels behind L-TAE (Garnot & Landrieu 2020) and U-TAE (Garnot &
//! Landrieu 2021): how a satellite image time series — every pixel a sequence of T dates — is compressed
//! over time by attention, forward and backward, and what that costs. Each step below names the file that
//! does it; `cargo run --example attention` runs a tiny case on the CPU and the GPU, printing every
//! intermediate and gradient (`examples/attention.rs`).
//!
//! ## 1. L-TAE: one query per head, not one per date
//! A transformer would compare every date with every other (O(T²) per pixel). L-TAE gives each head h **one
//! learnt "master" query** `Q[h]` (d_k numbers) shared by every pixel: the head asks one question of the
//! whole series — *which dates matter?* — and answers with a distribution over the dates. For sequence
//! n = b·P + p (sample b, pixel p of the P = rows · cols pixels of the map):
//!
//! ```text
//! e[n, t, ·]  = in_conv(in_norm(x)) + positional encoding(day of date t)        (N, T, d_model)  models/ltae.rs
//! k[n, t, h]  = fc1_k(e)[h·d_k .. (h+1)·d_k]                                       (N, T, H·d_k)    a Linear
//! s[h, n, t]  = ⟨Q[h], k[n, t, h]⟩ · inv_temp,  inv_temp = 1/√d_k;  −1000 on padded dates
//! a[h, n, t]  = softmax_t(s[h, n, ·])  (then dropout in training)                  (H, B, T, P)     attention_weights
//! o[n, h·d_v + c] = Σ_t a[h, n, t] · e[n, t, h·d_v + c],  d_v = d_model / H        (N, H·d_v)       attention_apply
//! out = out_norm(dropout(relu(bn(mlp(o)))))                                        (B, C_out, rows, cols)
//! ```
//! The values are the date features themselves, split into H groups of d_v channels (no value projection),
//! and the heads' outputs are concatenated. A worked example — one head, d_k = 4 (so inv_temp = 1/2), three
//! dates of which the last is padding, Q = (1, 0, 0, 0) and keys whose first components are 2·ln 3 and 0:
//! the scores are (ln 3, 0, −1000) and the weights (3/4, 1/4, 0) — e^{ln 3} : e^0 = 3 : 1, and the padded
//! date's e^{−1000} is 0 in float32:
//!
//! ```
//! use sitsgpu::engine::ops::attention::attention_weights::AttnDropout;
//! use sitsgpu::{Device, Tensor};
//!
//! let l3 = 3f32.ln();
//! // k (N = 1 sequence, T = 3 dates, H·d_k = 4), Q (H = 1, d_k = 4), pad mask (B = 1, T = 3): 1.0 = padded.
//! let k = Tensor::from_vec(vec![2.0 * l3, 0., 0., 0., 0., 5., 0., 0., 9., 9., 9., 9.], &[1, 3, 4], Device::Cpu);
//! let q = Tensor::from_vec(vec![1., 0., 0., 0.], &[1, 4], Device::Cpu);
//! let pad = Tensor::from_vec(vec![0., 0., 1.], &[1, 3], Device::Cpu);
//! let a = k.temporal_attention_weights(&q, Some(&pad), 1, AttnDropout::NONE).to_vec();
//! assert!((a[0] - 0.75).abs() < 1e-6 && (a[1] - 0.25).abs() < 1e-6 && a[2] == 0.0);
//! ```
//!
//! The same weights are returned laid out (H, B, T, rows, cols): a map per head and date of where the
//! model looks (`predict --save_attention` writes them).
//!
//! ## 2. The backward pass of L-TAE
//! ```text
//!   dout ─ mlp/norm backward ─ do (N, H·d_v)
//!   do ─ attention_apply backward ─┬─ de_values[n, t, h·d_v + c] = a[h, n, t] · do[n, h·d_v + c]
//!                                  └─ da[h, n, t] = Σ_c do[n, h·d_v + c] · e[n, t, h·d_v + c]
//!   da ─ dropout (same mask) ─ softmax backward: ds = a (da − Σ_t' da·a) · inv_temp   (0 on padded dates)
//!   ds ─┬─ dk[n, t, h·d_k + j] = ds[h, n, t] · Q[h, j]                               (attention_weights_backward.wgsl)
//!       └─ dQ[h] = Σ_{n,t} ds[h, n, t] · k[n, t, h]    one batched matmul over all N·T (linalg/matmul)
//!   de = de_values + fc1_kᵀ(dk)   — e feeds both the keys and the values
//! ```
//! Nothing but k, Q, the mask and the dropout seed is saved for the backward pass: the softmax is recomputed
//! there (T ≤ a few hundred dates, so recomputing beats storing H·N·T weights twice).
//!
//! ## 3. U-TAE: the same weights, reused on the skip connections
//! U-TAE runs L-TAE at the lowest resolution (rows · cols = H/8 · W/8) and then reuses its attention maps to
//! collapse time at every higher-resolution skip connection (`models/utae/mod.rs`, `aggregate`):
//! ```text
//!   a (H, B, T, H/8, W/8) ─ [att_group: the heads as G = H channel groups] ─ bilinear resize to the level
//!       (B·G, T, H_l, W_l) ─ × (1 − pad mask) ─ temporal_agg(skip_l (B, T, C_l, H_l, W_l)) → (B, C_l, H_l, W_l)
//!   y[b, c, ·] = Σ_t a_up[g(c), b, t, ·] · x[b, t, c, ·],   g(c) = c / (C_l / G)       (temporal_agg.wgsl)
//! ```
//! **attention_apply and temporal_agg are the same contraction Σ_t a·x in two layouts**: apply reads values
//! channels-last (N, T, H·d_v) with one weight per (head, sequence); temporal_agg reads feature maps
//! channels-first (B, T, C, H, W) with one weight per (group, pixel). So the gradient reaching the weights
//! in U-TAE is the sum of every path that used them:
//! ```text
//!   ∂a = ∂a from attention_apply  +  Σ over the skip levels l of  resizeᵀ( mask · ∂a_l from temporal_agg_l )
//! ```
//! — autograd adds the branches; each kernel only knows its own.
//!
//! ## 4. Napkin math: why one thread per (head, sequence) is enough
//! Every attention launch carries its FLOP and byte counts (`Grid::flops`, the bound buffers' bytes), so
//! `sitsgpu profile` shows them. For the U-TAE paper configuration (B = 4, T = 40 dates, 128 × 128 patches,
//! L-TAE on 16 × 16: N = 1,024 sequences, H = 16 heads, d_k = 4, d_model = 256 so d_v = 16) the forward pass
//! is 19.7 MFLOP and ~13 MB for the weights (k read, a written) plus 21.0 MFLOP and ~46 MB for the apply
//! (mostly reading the 42 MB of values): **about 41 MFLOP and 59 MB** — tested in
//! `tests::the_napkin_math_of_the_paper_configuration`. A paper-config training step is about 2 TFLOP
//! (111 ms on an H200 in float32, `benches/README.md`), so L-TAE's attention is ~0.002 % of the arithmetic
//! and ~15 µs of memory traffic: the simple design — one invocation per (head, sequence) looping over the
//! dates, scores recomputed rather than stored — costs nothing measurable, and stays readable. The skip
//! aggregation is the heavier part (it reads every skip feature map once: ~0.9 GB at the paper
//! configuration's first level and below), and it is a plain streaming read.
//!
//! ## 5. Honest names
//! `inv_temp` is the attention's scale 1/√d_k; `keep_scale` is dropout's 1/(1 − p) on the kept weights;
//! `head` is a head index and `rows`/`cols` the map's height and width; `cpu_weights` returns weights after
//! the softmax (`cpu_raw_scores` the masked, scaled scores before it).
//!
//! ## 6. Where everything is
//! | what | file |
//! | --- | --- |
//! | scores → weights, the padding mask, dropout; dk and ds in the backward | [`attention_weights`] + `shaders/attention/attention_weights{,_backward}.wgsl` |
//! | Σ_t a·v, heads concatenated; dv and da | [`attention_apply`] + `attention_apply{,_backward_value,_backward_attn}.wgsl` |
//! | U-TAE's skip aggregation Σ_t a·x; dx and da | [`temporal_agg`] + `temporal_agg{,_backward_x,_backward_attn}.wgsl` |
//! | the modules: master queries and their state-dict names (`layers/attention.rs`, shared), input conv, norms, positional encoding | `models/ltae.rs` (2-D, U-TAE), `models/ltae1d.rs` (pixel sets), `layers/positional_encoding.rs` |
//! | U-TAE's use of the maps on the skips | `models/utae/mod.rs` (`aggregate`) |
//! | the attention built from ordinary ops, compared with the fused kernels element by element | `attention_weights.rs`, `tests::the_fused_kernel_equals_the_composition_of_ordinary_ops` |
//! | a runnable walkthrough | `examples/attention.rs` |
//! | the attention as pictures | `predict --save_attention` (`attn_<ID>.npy` and `.png`) |

pub mod attention_apply;
pub mod attention_weights;
pub mod temporal_agg;
