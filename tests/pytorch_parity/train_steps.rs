//! The train-step checks of a parity case (the losses of 3 Adam steps, the step-1 gradients, the weights
//! after), and the decision diagnosis (`train::diagnose`) that runs when they fail: shared by the semantic,
//! pixel-set and panoptic cases of `tests/pytorch_parity/`.

use super::*;

/// A fixture's train steps: `losses.json` (Adam, the losses), `grads_step1.npz`, `weights_after.npz`, the
/// batches in training order, and the tolerance rules.
pub(crate) struct TrainSteps<'a> {
    pub(crate) rules: &'a Rules,
    pub(crate) tdir: &'a Path,
    pub(crate) info: &'a Value,
    pub(crate) batches: &'a [Vec<u64>],
}

impl TrainSteps<'_> {
    /// The train-step checks, then — when they fail — the decision diagnosis (`train::diagnose`): are the
    /// step-1 gradients reproduced by flipping activation decisions within float32 noise? Its report goes
    /// under the case's line; when flips explain the gradients, the whole train step is checked again with
    /// them applied at step 1 ([`Report::explained`] when it passes).
    pub(crate) fn check_and_diagnose<M: Module>(
        &self,
        rep: &mut Report,
        build: &dyn Fn() -> M,
        loss_of: &dyn Fn(&M, &[u64]) -> Tensor,
    ) {
        let before = rep.failures.len();
        let baseline = self.check(rep, &build(), loss_of, None);
        if rep.failures.len() == before {
            return;
        }
        let Some(reference) = self.reference_grads() else {
            rep.notes
                .push("diagnosis: no grads_step1.npz, nothing to compare decisions with".into());
            return;
        };
        let start = std::time::Instant::now();
        let d = diagnose(&reference, &DiagnoseOptions::default(), baseline, |opts| {
            let model = build();
            let named = model.named_parameters("");
            let (_, sites) = decisions::record(opts, &named, || {
                loss_of(&model, &self.batches[0]).backward()
            });
            (sites, reference_grads_of(&named, &reference))
        });
        rep.notes.push(format!(
            "diagnosis ({:.0} s):\n{}",
            start.elapsed().as_secs_f64(),
            d.text()
        ));
        if d.explained() && !d.accepted.is_empty() {
            let mut again = Report::default();
            self.check(&mut again, &build(), loss_of, Some(&d.accepted));
            rep.explained = again.failures.is_empty();
            rep.notes.push(format!(
                "the whole train step again with those flips at step 1: {}",
                if rep.explained {
                    format!("PASS ({})", again.summary())
                } else {
                    format!("FAIL ({})", rep_fail_text(&again))
                }
            ));
        }
    }

    /// The step-1 reference gradients with their tolerances: `3e-4 · max|grad of tensor| + 1e-6 · max|grad
    /// overall|`, or 4× the measured noise; gradients that are zero in exact arithmetic (a bias before a
    /// train-mode BatchNorm) are rounding noise on both sides, an independent draw whose size depends on the
    /// summation order; they are checked to be at noise level (1e-5 of the largest gradient; a wrong gradient
    /// has the scale of the tensor's neighbours, orders of magnitude above).
    fn reference_grads(&self) -> Option<Reference> {
        let path = self.tdir.join("grads_step1.npz");
        if !path.exists() {
            return None;
        }
        let g = read_npz(path).unwrap_or_else(|e| panic!("{e}"));
        let big_g = g
            .keys()
            .filter_map(|k| f32_of(&g, k))
            .map(|v| max_abs(&v))
            .fold(0.0, f64::max);
        let zero = self.zero_gradient_params();
        let grads = g
            .keys()
            .map(|key| {
                let values = f32_of(&g, key).unwrap();
                let zero = zero.iter().any(|z| z == key);
                let mut tol = (1e-6 * big_g + 3e-4 * max_abs(&values))
                    .max(4.0 * self.rules.measured("grads_step1", key, 0));
                if zero {
                    tol = tol.max(1e-5 * big_g);
                }
                RefGrad {
                    name: key.to_string(),
                    values,
                    tol,
                    zero,
                }
            })
            .collect();
        Some(Reference { grads })
    }

    fn zero_gradient_params(&self) -> Vec<String> {
        self.info["zero_gradient_params"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The train-step checks shared by every kind: Adam from `losses.json`, then for each batch zero_grad,
    /// `loss_of(model, ids)`, backward, the loss (and step-1 gradients) against the fixture, Adam step; at the
    /// end the weights after the steps. Step 1 runs under the decision recorder, with `flips` reversed (the
    /// diagnosis); returns its sites and the gradients of the reference's tensors (the diagnosis's baseline).
    fn check<M: Module>(
        &self,
        rep: &mut Report,
        model: &M,
        loss_of: &dyn Fn(&M, &[u64]) -> Tensor,
        flips: Option<&BTreeMap<usize, Vec<usize>>>,
    ) -> Option<RunOutput> {
        let (rules, info) = (self.rules, self.info);
        let params = model.parameters();
        let opt_conf = &info["optimizer"];
        let cfg = AdamConfig {
            lr: opt_conf["lr"].as_f64().unwrap_or(1e-3),
            beta1: opt_conf["betas"][0].as_f64().unwrap_or(0.9),
            beta2: opt_conf["betas"][1].as_f64().unwrap_or(0.999),
            eps: opt_conf["eps"].as_f64().unwrap_or(1e-8),
            weight_decay: opt_conf["weight_decay"].as_f64().unwrap_or(0.0),
        };
        let mut opt = Adam::new(params.clone(), cfg);
        let expected_losses: Vec<f64> = info["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let prec_losses = |i: usize| {
            let f32v = rules
                .precision
                .pointer(&format!("/losses/f32/{i}"))
                .and_then(Value::as_f64);
            let f64v = rules
                .precision
                .pointer(&format!("/losses/f64/{i}"))
                .and_then(Value::as_f64);
            match (f32v, f64v) {
                (Some(a), Some(b)) => (a - b).abs() / b.abs(),
                _ => 0.0,
            }
        };
        let named: Vec<(String, Tensor)> = model.named_parameters("");
        let zero = self.zero_gradient_params();
        let reference = self.reference_grads();
        let mut baseline = None;
        for (step, ids) in self.batches.iter().enumerate() {
            opt.zero_grad();
            let loss = if step == 0 {
                let opts = DecisionOptions {
                    flips: flips.cloned().unwrap_or_default(),
                    ..DecisionOptions::default()
                };
                let (loss, sites) = decisions::record(&opts, &named, || {
                    let loss = loss_of(model, ids);
                    loss.backward();
                    loss
                });
                baseline = reference
                    .as_ref()
                    .map(|r| (sites, reference_grads_of(&named, r)));
                loss
            } else {
                let loss = loss_of(model, ids);
                loss.backward();
                loss
            };
            let l = loss.item() as f64;
            let e = expected_losses[step];
            let tol = 1e-5f64.max(4.0 * prec_losses(step));
            rep.check(
                "loss",
                &format!("loss step {}", step + 1),
                (l - e).abs() / e.abs() <= tol,
                (l - e).abs() / e.abs(),
                tol,
            );
            if let Some(reference) = reference.as_ref().filter(|_| step == 0) {
                let got = &baseline.as_ref().expect("recorded at step 1").1;
                for rg in &reference.grads {
                    let key = &rg.name;
                    let Some((_, g)) = got.iter().find(|(n, _)| n == key) else {
                        rep.failures.push(format!("grad {key}: no such parameter"));
                        continue;
                    };
                    let zeros;
                    let g = if g.is_empty() {
                        zeros = vec![0.0; rg.values.len()];
                        &zeros
                    } else {
                        g
                    };
                    let err = max_err(g, &rg.values);
                    rep.check("grad", &format!("grad {key}"), err <= rg.tol, err, rg.tol);
                }
            }
            opt.step();
        }
        if self.tdir.join("weights_after.npz").exists() {
            let expected =
                read_npz(self.tdir.join("weights_after.npz")).unwrap_or_else(|e| panic!("{e}"));
            let mine = state_dict(model);
            let steps = expected_losses.len() as f64;
            for key in expected.keys() {
                let (Some(e), Some(m)) = (f32_of(&expected, key), f32_of(&mine, key)) else {
                    rep.failures.push(format!("weights_after {key}: missing"));
                    continue;
                };
                if matches!(expected.get(key).map(|x| &x.values), Some(Values::I64(_))) {
                    rep.check(
                        "weights",
                        &format!("weights_after {key}"),
                        e == m,
                        if e == m { 0.0 } else { 1.0 },
                        1.0,
                    );
                    continue;
                }
                let meas = rules.measured("weights_after", key, 0).max(rules.measured(
                    "weights_after",
                    key,
                    1,
                ));
                let tight = 5e-5 + 1e-5 * max_abs(&e);
                let mut loose = 1e-3f64.max(4.0 * meas);
                let only_loose = zero.iter().any(|z| z == key) || 4.0 * meas > tight;
                if zero.iter().any(|z| z == key) {
                    loose = loose.max(2.05 * cfg.lr * steps);
                }
                let err = max_err(&m, &e);
                let above = m
                    .iter()
                    .zip(&e)
                    .filter(|(a, b)| (**a as f64 - **b as f64).abs() > tight)
                    .count();
                let allowed = 1usize.max((0.05 * e.len() as f64) as usize);
                let ok = err <= loose && (only_loose || above <= allowed);
                rep.check(
                    "weights",
                    &format!("weights_after {key} ({above} above tight)"),
                    ok,
                    err,
                    loose,
                );
            }
        }
        baseline
    }
}

/// The gradients of the reference's tensors among `named` (empty for a parameter without a gradient).
fn reference_grads_of(
    named: &[(String, Tensor)],
    reference: &Reference,
) -> Vec<(String, Vec<f32>)> {
    named
        .iter()
        .filter(|(n, _)| reference.grads.iter().any(|r| r.name == *n))
        .map(|(n, p)| (n.clone(), p.grad().map(|g| g.to_vec()).unwrap_or_default()))
        .collect()
}
