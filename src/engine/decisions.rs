//! Activation decisions within float32 noise: a recorder the decision ops report to, and flips.
//!
//! A ReLU lets its gradient through where its input is positive; a max sends it to the first maximal element.
//! Where that input sits within float32 noise of the boundary (a ReLU input of +9e-9 whose exact value is
//! −7e-9; two candidates of a max a few ulp apart), two correct implementations that merely sum in another
//! order can decide differently, and the gradients then differ by a whole upstream gradient element — far
//! beyond any rounding tolerance. This module makes such cases visible:
//!
//! - [`record`] runs a closure with a thread-local recorder on. Every decision site the closure runs — each
//!   call of [`Tensor::relu`], [`Tensor::max`] (on inputs that require a gradient) and [`Tensor::argmax`] — is
//!   numbered in call order and becomes a [`Site`]: a label naming the layer (the nearest parameter up the
//!   autograd graph), the input's shape, its RMS `scale`, and the elements whose margin (the ReLU input; the
//!   gap between the max and the runner-up) is within `k · ε · scale` of the boundary (ε = 2⁻²³).
//! - [`Options::flips`] reverses chosen decisions in that run, in the backward pass only: the forward values
//!   stay bit for bit those of the unflipped run (a flipped ReLU still outputs `max(x, 0)`, a flipped max its
//!   maximum), but the ReLU's backward lets the gradient through where it blocked it (or blocks it), the
//!   max's backward sends it to the runner-up. Keeping the forward untouched matters: even a noise-sized
//!   change of one activation can tip other decisions downstream (train-mode batch statistics spread it),
//!   so only the backward route of the chosen elements changes and the effect on the gradients is exactly
//!   that of those decisions.
//! - [`Options::keep_decisions`] keeps every decision of every site, so two runs (a GPU and a CPU run of the
//!   same model and inputs) can be compared element by element ([`Site::mismatches`]).
//!
//! With the recorder off (the normal case) each hook costs one thread-local read. With it on, every site's
//! input is read back to the host (a GPU synchronisation per site): a diagnostic mode, not a training mode.
//! `train::diagnose` drives it (which flips move the gradients to a reference).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::engine::shape;
use crate::engine::tensor::{Edge, Tensor};

/// The kind of decision a site makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `relu`: pass where the input is positive.
    Relu,
    /// `max` along an axis: the gradient goes to the first maximal element.
    Max,
    /// `argmax` along an axis (no gradient; predictions).
    Argmax,
}

impl Kind {
    /// The op's name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Relu => "relu",
            Kind::Max => "max",
            Kind::Argmax => "argmax",
        }
    }
}

/// What [`record`] does.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Noise multiple: an element is near its boundary when its margin is at most `k · ε · scale`
    /// (ε = 2⁻²³, `scale` the RMS of the site's input). 0 means [`DEFAULT_K`].
    pub k: f64,
    /// Decisions to reverse: site id → element indices (a ReLU input's flat index; a max's flat output
    /// index). Only sites of kind [`Kind::Relu`] and [`Kind::Max`] can be flipped.
    pub flips: BTreeMap<usize, Vec<usize>>,
    /// Keep every decision of every site ([`Site::decisions`]).
    pub keep_decisions: bool,
}

/// The default noise multiple `k`: generous enough for the ReLU inputs seen to flip between PyTorch, the CPU
/// reference and the GPU (2.7 ε and about 16 ε of their tensor's RMS), small enough to leave a handful of
/// candidates in a million activations.
pub const DEFAULT_K: f64 = 64.0;

/// One element near its decision boundary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    /// ReLU: the input's flat index. Max / argmax: the flat output index `o · inner + i`.
    pub index: usize,
    /// ReLU: the input value (its sign is the decision). Max / argmax: the maximum minus the runner-up (≥ 0).
    pub margin: f32,
    /// Max / argmax: the runner-up's position along the axis.
    pub runner_up: Option<usize>,
    /// The upstream gradient at the element (the ReLU's output, the max's output), when the backward pass
    /// ran while recording: what flipping it moves (a ReLU flip adds or removes that much gradient at its
    /// input, a max flip moves it to the runner-up). `None` before the backward pass.
    pub grad: Option<f32>,
}

/// Every decision of a site (kept with [`Options::keep_decisions`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Decisions {
    /// ReLU: whether each input passes (x > 0).
    Pass(Vec<bool>),
    /// Max / argmax: the chosen position along the axis for each output.
    Choice(Vec<u32>),
}

/// One decision site of a recorded run.
#[derive(Debug, Clone)]
pub struct Site {
    /// Call order within the recorded run (0-based); the key of [`Options::flips`].
    pub id: usize,
    /// Its kind.
    pub kind: Kind,
    /// The layer: `after <module> (<op that made the input>)`, the nearest parameter up the autograd graph.
    pub label: String,
    /// That module (a parameter name without its last component, e.g. `down_blocks.0.conv2.conv.1`).
    pub module: Option<String>,
    /// The op that made the input (`group_norm`, `batch_norm`, `conv2d`, …).
    pub op: &'static str,
    /// The input's shape.
    pub shape: Vec<usize>,
    /// Max / argmax: the reduced axis.
    pub axis: Option<usize>,
    /// The RMS of the input.
    pub scale: f64,
    /// `k · ε · scale`.
    pub threshold: f64,
    /// Elements within `threshold` of their boundary, smallest |margin| first; exact ties of a max (margin 0,
    /// e.g. copies of one pixel) excluded, see `exact_ties`.
    pub near: Vec<Near>,
    /// Max / argmax: outputs whose maximum is attained twice exactly (both sides take the first).
    pub exact_ties: usize,
    /// The elements flipped in this run.
    pub flipped: Vec<usize>,
    /// Every decision (with [`Options::keep_decisions`]).
    pub decisions: Option<Decisions>,
    /// The margin of every element (with [`Options::keep_decisions`]; as [`Near::margin`]).
    pub margins: Option<Vec<f32>>,
}

impl Site {
    /// Where flat element `index` of the input (ReLU) or output (max) lies, as coordinates of its shape.
    pub fn coords(&self, index: usize) -> Vec<usize> {
        let mut shape = self.shape.clone();
        if let Some(ax) = self.axis {
            shape.remove(ax);
        }
        let mut c = vec![0; shape.len()];
        let mut rest = index;
        for d in (0..shape.len()).rev() {
            c[d] = rest % shape[d].max(1);
            rest /= shape[d].max(1);
        }
        c
    }

    /// The elements whose decision differs between this site and `other` (the same site of another run):
    /// `(index, margin here, margin there)`. Needs the decisions of both (`keep_decisions`).
    pub fn mismatches(&self, other: &Site) -> Vec<(usize, f32, f32)> {
        let (Some(a), Some(b)) = (&self.decisions, &other.decisions) else {
            return Vec::new();
        };
        let (ma, mb) = (
            self.margins.as_deref().unwrap_or(&[]),
            other.margins.as_deref().unwrap_or(&[]),
        );
        let at = |m: &[f32], i: usize| m.get(i).copied().unwrap_or(f32::NAN);
        match (a, b) {
            (Decisions::Pass(x), Decisions::Pass(y)) => (0..x.len().min(y.len()))
                .filter(|&i| x[i] != y[i])
                .map(|i| (i, at(ma, i), at(mb, i)))
                .collect(),
            (Decisions::Choice(x), Decisions::Choice(y)) => (0..x.len().min(y.len()))
                .filter(|&i| x[i] != y[i])
                .map(|i| (i, at(ma, i), at(mb, i)))
                .collect(),
            _ => Vec::new(),
        }
    }
}

struct State {
    opts: Options,
    names: HashMap<u64, String>,
    sites: Vec<Site>,
}

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// Runs `f` with the recorder on (see the module doc) and returns its result and the sites it ran, in call
/// order. `names` (a model's `named_parameters`) label the sites. Not reentrant.
pub fn record<R>(
    opts: &Options,
    names: &[(String, Tensor)],
    f: impl FnOnce() -> R,
) -> (R, Vec<Site>) {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ACTIVE.with(|a| a.set(false));
            STATE.with(|s| s.borrow_mut().take());
        }
    }
    assert!(
        !ACTIVE.with(Cell::get),
        "decisions::record: already recording on this thread"
    );
    let mut opts = opts.clone();
    if opts.k <= 0.0 {
        opts.k = DEFAULT_K;
    }
    STATE.with(|s| {
        *s.borrow_mut() = Some(State {
            opts,
            names: names.iter().map(|(n, t)| (t.id(), n.clone())).collect(),
            sites: Vec::new(),
        })
    });
    ACTIVE.with(|a| a.set(true));
    let off = Off;
    let out = f();
    let sites = STATE.with(|s| {
        s.borrow_mut()
            .as_mut()
            .map(|st| std::mem::take(&mut st.sites))
    });
    drop(off);
    (out, sites.unwrap_or_default())
}

/// Whether a recorder runs on this thread (recomputation is off then: every decision site runs once).
pub fn active() -> bool {
    ACTIVE.with(Cell::get)
}

/// The next site's id, its flips and the options (k, keep).
fn next_site() -> (usize, Vec<usize>, f64, bool) {
    STATE.with(|s| {
        let s = s.borrow();
        let st = s.as_ref().expect("recording");
        let id = st.sites.len();
        let flips = st.opts.flips.get(&id).cloned().unwrap_or_default();
        (id, flips, st.opts.k, st.opts.keep_decisions)
    })
}

fn push(site: Site) {
    STATE.with(|s| {
        if let Some(st) = s.borrow_mut().as_mut() {
            st.sites.push(site)
        }
    });
}

/// The module of the nearest named parameter up the autograd graph of `x` (breadth first, a few ops deep),
/// and the op that made `x`.
fn module_of(x: &Tensor) -> (Option<String>, &'static str) {
    let op = x.node().map_or("input", |n| n.name());
    let found = STATE.with(|s| {
        let s = s.borrow();
        let names = &s.as_ref()?.names;
        let mut queue: VecDeque<(Edge, usize)> = VecDeque::from([(Edge::to(x), 0)]);
        while let Some((e, depth)) = queue.pop_front() {
            if let Some(n) = names.get(&e.id) {
                return Some(n.rsplit_once('.').map_or(n.as_str(), |p| p.0).to_string());
            }
            if depth < 8 {
                if let Some(node) = &e.node {
                    queue.extend(node.inputs.iter().map(|i| (i.clone(), depth + 1)));
                }
            }
        }
        None
    });
    (found, op)
}

fn label(module: &Option<String>, op: &str) -> String {
    match module {
        Some(m) => format!("after {m} ({op})"),
        None => format!("({op}, no parameter upstream)"),
    }
}

fn rms(v: &[f32]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    (v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / v.len() as f64).sqrt()
}

/// What a decision op's forward learns from the recorder.
#[derive(Default)]
pub(crate) struct Hook {
    /// ReLU: the input its backward must see instead of the real one (flipped elements negated; `None`: the
    /// real input).
    pub backward_input: Option<Tensor>,
    /// Max: outputs whose gradient goes to another position along the axis, `(flat output index, position)`.
    pub choices: Vec<(usize, u32)>,
    /// The site's id while recording (its backward then reports the upstream gradient, [`on_backward`]).
    pub site: Option<usize>,
}

/// Hook of [`Tensor::relu`]: records the site while recording; when the site has flips, returns the input
/// its backward must see (the flipped elements negated: the forward output is left as it is).
pub(crate) fn on_relu(x: &Tensor) -> Hook {
    if !active() || !x.requires_grad() {
        return Hook::default();
    }
    let (id, flips, k, keep) = next_site();
    let (module, op) = module_of(x);
    let data = x.to_vec();
    let scale = rms(&data);
    let threshold = k * f32::EPSILON as f64 * scale;
    let mut near: Vec<Near> = data
        .iter()
        .enumerate()
        .filter(|(_, &v)| (v.abs() as f64) <= threshold)
        .map(|(index, &margin)| Near {
            index,
            margin,
            runner_up: None,
            grad: None,
        })
        .collect();
    near.sort_by(|a, b| a.margin.abs().total_cmp(&b.margin.abs()));
    let backward_input = (!flips.is_empty()).then(|| {
        let mut xb = data.clone();
        for &i in &flips {
            // An exact zero becomes a tiny positive input (the backward then passes).
            xb[i] = if data[i] == 0.0 { 1e-30 } else { -data[i] };
        }
        Tensor::from_vec(xb, x.shape(), x.device())
    });
    push(Site {
        id,
        kind: Kind::Relu,
        label: label(&module, op),
        module,
        op,
        shape: x.shape().to_vec(),
        axis: None,
        scale,
        threshold,
        near,
        exact_ties: 0,
        flipped: flips.clone(),
        // The decisions as taken: flipped elements reversed.
        decisions: keep.then(|| {
            let mut pass: Vec<bool> = data.iter().map(|&v| v > 0.0).collect();
            for &i in &flips {
                pass[i] = !pass[i];
            }
            Decisions::Pass(pass)
        }),
        margins: keep.then_some(data),
    });
    Hook {
        backward_input,
        choices: Vec::new(),
        site: Some(id),
    }
}

/// Hook of a decision op's backward: records |dy| at the site's near elements (`dy` has the shape of the
/// ReLU's output or of the max's output, so a near element's index reads its upstream gradient).
pub(crate) fn on_backward(site: Option<usize>, dy: &Tensor) {
    let Some(id) = site.filter(|_| active()) else {
        return;
    };
    let wanted = STATE.with(|s| {
        s.borrow()
            .as_ref()
            .and_then(|st| st.sites.get(id))
            .is_some_and(|site| !site.near.is_empty())
    });
    if !wanted {
        return;
    }
    let g = dy.to_vec();
    STATE.with(|s| {
        if let Some(site) = s.borrow_mut().as_mut().and_then(|st| st.sites.get_mut(id)) {
            for n in &mut site.near {
                n.grad = g.get(n.index).copied();
            }
        }
    });
}

/// Hook of [`Tensor::max`] (and, with `kind` Argmax, of [`Tensor::argmax`]) along `axis`: records the
/// site, and returns the runner-up of each flipped output (its backward sends the gradient there).
pub(crate) fn on_max(x: &Tensor, axis: usize, kind: Kind) -> Hook {
    if !active() || (kind == Kind::Max && !x.requires_grad()) {
        return Hook::default();
    }
    let (id, flips, k, keep) = next_site();
    let (module, op) = module_of(x);
    let data = x.to_vec();
    let (outer, r, inner) = shape::outer_axis_inner(x.shape(), axis);
    let scale = rms(&data);
    let threshold = k * f32::EPSILON as f64 * scale;
    let at = |o: usize, j: usize, i: usize| data[(o * r + j) * inner + i];
    let (mut near, mut exact_ties) = (Vec::new(), 0);
    let mut choice = Vec::with_capacity(outer * inner);
    let mut margins = Vec::with_capacity(outer * inner);
    let mut best = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            // First maximum (as torch.max and our kernels), then the best of the others.
            let mut j1 = 0;
            for j in 1..r {
                if at(o, j, i) > at(o, j1, i) {
                    j1 = j;
                }
            }
            let j2 = (0..r)
                .filter(|&j| j != j1)
                .max_by(|&a, &b| at(o, a, i).total_cmp(&at(o, b, i)).then(b.cmp(&a)));
            let gap = j2.map_or(f32::INFINITY, |j2| at(o, j1, i) - at(o, j2, i));
            let index = o * inner + i;
            if gap == 0.0 {
                exact_ties += 1;
            } else if (gap as f64) <= threshold {
                near.push(Near {
                    index,
                    margin: gap,
                    runner_up: j2,
                    grad: None,
                });
            }
            choice.push(j1 as u32);
            margins.push(gap);
            best.push((j1, j2));
        }
    }
    near.sort_by(|a, b| a.margin.total_cmp(&b.margin));
    let flippable = kind == Kind::Max && !flips.is_empty();
    let choices: Vec<(usize, u32)> = if flippable {
        flips
            .iter()
            .filter_map(|&index| Some((index, best[index].1? as u32)))
            .collect()
    } else {
        Vec::new()
    };
    for &(index, j2) in &choices {
        choice[index] = j2; // the recorded choices are the ones taken
    }
    push(Site {
        id,
        kind,
        label: label(&module, op),
        module,
        op,
        shape: x.shape().to_vec(),
        axis: Some(axis),
        scale,
        threshold,
        near,
        exact_ties,
        flipped: if flippable { flips } else { Vec::new() },
        decisions: keep.then_some(Decisions::Choice(choice)),
        margins: keep.then_some(margins),
    });
    Hook {
        backward_input: None,
        choices,
        site: Some(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Device;

    #[test]
    fn records_near_relu_inputs_and_flips_them() {
        let w = Tensor::from_vec(vec![1.0, -3e-7, 2.0, 0.0], &[4], Device::Cpu).requires_grad_();
        let names = vec![("layer.weight".to_string(), w.clone())];
        let run = |flips: BTreeMap<usize, Vec<usize>>| {
            let opts = Options {
                k: 16.0,
                flips,
                keep_decisions: true,
            };
            let (_, sites) = record(&opts, &names, || {
                w.zero_grad();
                (&w * 1.0).relu().sum_all().backward();
            });
            (sites, w.grad().unwrap().to_vec())
        };
        let (sites, g) = run(BTreeMap::new());
        assert_eq!(sites.len(), 1);
        let s = &sites[0];
        assert_eq!(s.kind, Kind::Relu);
        assert_eq!(s.label, "after layer (mul_scalar)");
        // RMS = sqrt(5 / 4) ≈ 1.118; threshold = 16 ε · 1.118 ≈ 2.1e-6: the exact zero first, then −3e-7.
        let idx: Vec<usize> = s.near.iter().map(|n| n.index).collect();
        assert_eq!(idx, vec![3, 1]);
        // The backward ran while recording: the upstream gradient of sum_all is 1 everywhere.
        assert_eq!(s.near[0].grad, Some(1.0));
        assert_eq!(g, vec![1.0, 0.0, 1.0, 0.0]);
        // Flipping both: −3e-7 → +3e-7 passes, 0 → tiny positive passes.
        let (sites2, g2) = run(BTreeMap::from([(0, vec![1, 3])]));
        assert_eq!(g2, vec![1.0, 1.0, 1.0, 1.0]);
        assert_eq!(sites2[0].flipped, vec![1, 3]);
        let mism: Vec<usize> = sites2[0].mismatches(s).iter().map(|m| m.0).collect();
        assert_eq!(mism, vec![1, 3]);
    }

    #[test]
    fn records_max_near_ties_and_flips_the_runner_up() {
        // Two outputs (rows) of max over 3: row 0 has a near tie (1.0 vs 1.0 − 1e-7), row 1 is clear.
        let x = Tensor::from_vec(
            vec![1.0 - 1e-7, 1.0, 0.0, 5.0, 1.0, 2.0],
            &[2, 3],
            Device::Cpu,
        )
        .requires_grad_();
        let run = |flips: BTreeMap<usize, Vec<usize>>| {
            let opts = Options {
                k: 16.0,
                flips,
                keep_decisions: false,
            };
            let (_, sites) = record(&opts, &[], || {
                x.zero_grad();
                x.max(1, false).sum_all().backward();
            });
            (sites, x.grad().unwrap().to_vec())
        };
        let (sites, g) = run(BTreeMap::new());
        assert_eq!(sites[0].kind, Kind::Max);
        assert_eq!(sites[0].near.len(), 1);
        assert_eq!(sites[0].near[0].index, 0);
        assert_eq!(sites[0].near[0].runner_up, Some(0));
        assert_eq!(g, vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        let (_, g2) = run(BTreeMap::from([(0, vec![0])]));
        assert_eq!(g2, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn off_by_default() {
        let x = Tensor::from_vec(vec![0.0], &[1], Device::Cpu).requires_grad_();
        let hook = on_relu(&x);
        assert!(hook.backward_input.is_none() && hook.site.is_none());
    }
}
