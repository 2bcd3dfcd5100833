//! `panoptic` cases (U-TAE + PaPs, U-ConvLSTM + PaPs): eval outputs of every stored patch (heatmap, saliency, center mask,
//! centers, sizes, classes, confidences, shapes, boxes, instance masks, panoptic maps, the U-TAE attention), the
//! original PanopticMeter over every eval batch (`metrics.json`: the table, SQ, RQ, PQ; `metric_checks.json`
//! is checked by the meter's own tests, `train::panoptic::meter`), then the train steps (PaPsLoss with ground-truth zones: the three losses, the
//! per-term losses and train-time centers of `losses.json`, every step-1 gradient, the weights after 3 Adam
//! steps). Integer outputs must be identical.

use super::*;
use sitsgpu::data::pastis::Target;
use sitsgpu::models::paps::loss::{paps_loss, PapsLossConfig};
use sitsgpu::models::paps::{Paps, BACKBONES};
use sitsgpu::train::panoptic::meter::{PanopticMeter, IOU_THRESHOLD};

/// One call of the loss: its center, size, shape and class terms, and the train-time centers (b, y, x).
type StepNote = ([f32; 4], Vec<[usize; 3]>);

fn check_ints(rep: &mut Report, file: &str, got: &[f32], expected: &[f32]) {
    let bad = got.len() != expected.len() || got.iter().zip(expected).any(|(a, b)| a != b);
    if bad {
        let first = got.iter().zip(expected).position(|(a, b)| a != b);
        rep.failures.push(format!(
            "{file}: integer output differs ({} vs {} values, first difference at {first:?})",
            got.len(),
            expected.len()
        ));
    }
    rep.check("ints", file, !bad, if bad { 1.0 } else { 0.0 }, 1.0);
}

fn loss_config(conf: &Value) -> PapsLossConfig {
    let f = |k: &str, d: f64| conf.get(k).and_then(Value::as_f64).unwrap_or(d) as f32;
    PapsLossConfig {
        l_center: f("l_center", 1.0),
        l_size: f("l_size", 1.0),
        l_shape: f("l_shape", 1.0),
        l_class: f("l_class", 1.0),
        beta: f("beta", 4.0),
        void_label: conf.get("void_label").and_then(Value::as_i64).unwrap_or(19),
        ..PapsLossConfig::default()
    }
}

pub(super) fn run_panoptic(case: &Path, conf: &Value, device: Device) -> Outcome {
    let reference = &conf["reference"];
    let kwargs = reference.get("constructor_kwargs").unwrap_or(conf);
    if let Some(b) = conf
        .get("backbone")
        .and_then(Value::as_str)
        .filter(|&b| !BACKBONES.contains(&b))
    {
        return Outcome::Unsupported(format!("backbone {b:?} not implemented yet"));
    }
    // train_panoptic.py's --no_supmax: training centers are the local maxima, not one per zone.
    let supmax = conf.get("supmax").and_then(Value::as_bool).unwrap_or(true);
    let conf_path = case.join("conf.json");
    let weights = read_npz(case.join("weights.npz")).unwrap_or_else(|e| panic!("{e}"));
    let rules = Rules {
        precision: std::fs::read_to_string(case.join("precision.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null),
    };
    let folder = reference
        .get("dataset_folder_relative_to_case")
        .or(conf.get("dataset_folder"))
        .and_then(Value::as_str)
        .expect("dataset folder");
    let opts = PastisOptions {
        target: Target::Instance,
        ..PastisOptions::default()
    };
    let ds = PastisDataset::open(case.join(folder), opts).unwrap_or_else(|e| panic!("{e}"));
    let build = || {
        let m = Paps::from_conf(kwargs, &conf_path, 0, device).unwrap_or_else(|e| panic!("{e}"));
        load_state_dict(&m, &weights, &case.join("weights.npz")).unwrap_or_else(|e| panic!("{e}"));
        m
    };
    let mut rep = Report::default();

    // ---- eval mode: every eval batch (metrics), stored outputs for some.
    let model = build();
    let k = model.config.num_classes;
    let stored = flag_list_to_ids(reference.get("expected_stored_for").unwrap_or(&Value::Null));
    let eval = flag_list_to_ids(reference.get("eval_batches").unwrap_or(&Value::Null));
    let void = conf.get("void_label").and_then(Value::as_i64).unwrap_or(19);
    let background = conf
        .get("background_label")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut meter = PanopticMeter::new(k, background, Some(void), IOU_THRESHOLD);
    let ctx = Ctx::eval();
    let exp = case.join("expected");
    let read = |file: &str| npy::read_f32(exp.join(file)).ok().map(|a| a.data);
    for ids in &eval {
        let batch = load_batch(&ds, ids, device);
        let out = sitsgpu::no_grad(|| {
            model.forward(&batch.x, &batch.days, &batch.pad, &ctx, None, true, false)
        });
        let pano = out.panoptic.as_ref().expect("panoptic maps");
        let [_, h, w] = pano.dims;
        let hw = h * w;
        let classes = pano.classes();
        let target = batch.instance.as_ref().expect("instance target");
        meter.add_outputs(pano.dims, &pano.instance, &pano.semantic, target);
        if !stored.contains(ids) {
            continue;
        }
        let heat = out.heatmap.to_vec();
        let sal = out
            .saliency
            .as_ref()
            .map(|s| s.to_vec())
            .unwrap_or_default();
        // --precision mixed: the two maps before any discrete decision (the centers are the heatmap's local
        // maxima, so what follows them may legitimately differ), against the same float32 reference.
        let (out_mixed, halves) = mixed(|| {
            sitsgpu::no_grad(|| {
                model.forward(&batch.x, &batch.days, &batch.pad, &ctx, None, true, false)
            })
        });
        let heat_mixed = out_mixed.heatmap.to_vec();
        let sal_mixed = out_mixed
            .saliency
            .as_ref()
            .map(|s| s.to_vec())
            .unwrap_or_default();
        let heads = out.heads.as_ref();
        let size = heads.map(|x| x.size.to_vec()).unwrap_or_default();
        let sem = heads.map(|x| x.semantic.to_vec()).unwrap_or_default();
        let shape = heads.map(|x| x.shape.to_vec()).unwrap_or_default();
        let masks = heads.map(|x| x.masks.to_vec()).unwrap_or_default();
        let s2 = model.config.shape_size * model.config.shape_size;
        let attn = out.attn.as_ref().map_or(Vec::new(), |a| a.to_vec());
        let as_ = out.attn.as_ref().map_or(vec![0; 5], |a| a.shape().to_vec());
        for (i, id) in ids.iter().enumerate() {
            for (name, all, all_mixed) in [
                ("heatmap", &heat, &heat_mixed),
                ("saliency", &sal, &sal_mixed),
            ] {
                let file = format!("{name}_{id}.npy");
                if let (Some(e), Some(got)) = (read(&file), all_mixed.get(i * hw..(i + 1) * hw)) {
                    debug_assert_eq!(all.len(), all_mixed.len());
                    check_mixed(&mut rep, &rules, &file, got, &e, halves);
                }
            }
            let mine: Vec<usize> = (0..out.centers.len())
                .filter(|&m| out.centers[m].b == i)
                .collect();
            let f = |name: &str| format!("{name}_{id}.npy");
            let pick = |v: &[f32], per: usize| -> Vec<f32> {
                mine.iter()
                    .flat_map(|&m| v[m * per..(m + 1) * per].to_vec())
                    .collect()
            };
            let mut floats: Vec<(String, Vec<f32>)> = vec![
                (f("heatmap"), heat[i * hw..(i + 1) * hw].to_vec()),
                (f("saliency"), sal[i * hw..(i + 1) * hw].to_vec()),
                (f("center_size"), pick(&size, 2)),
                (f("center_semantic"), pick(&sem, k)),
                (
                    f("center_confidence"),
                    mine.iter().map(|&m| out.centers[m].confidence).collect(),
                ),
                (f("center_shape"), pick(&shape, s2)),
                (
                    f("instance_masks"),
                    heads
                        .map(|x| {
                            mine.iter()
                                .flat_map(|&m| masks[x.layout.range(m)].to_vec())
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
            ];
            // The attention of a U-TAE backbone (RecUNet has none: an expected file is then a failure).
            if out.attn.is_some() {
                floats.push((f("attn"), {
                    let (heads_n, bsz, t_max, hw8) = (as_[0], as_[1], as_[2], as_[3] * as_[4]);
                    let t_i = batch.lengths[i];
                    (0..heads_n)
                        .flat_map(|hh| {
                            let base = (hh * bsz + i) * t_max * hw8;
                            attn[base..base + t_i * hw8].to_vec()
                        })
                        .collect()
                }));
            } else if read(&f("attn")).is_some() {
                rep.failures
                    .push(format!("{}: the backbone has no attention", f("attn")));
            }
            for (file, got) in floats {
                if let Some(e) = read(&file) {
                    check_forward(&mut rep, &rules, &file, &got, &e);
                }
            }
            let ints: Vec<(String, Vec<f32>)> = vec![
                (
                    f("center_mask"),
                    out.center_mask[i * hw..(i + 1) * hw]
                        .iter()
                        .map(|&b| b as u8 as f32)
                        .collect(),
                ),
                (
                    f("centers"),
                    mine.iter()
                        .flat_map(|&m| [out.centers[m].y as f32, out.centers[m].x as f32])
                        .collect(),
                ),
                (
                    f("instance_boxes"),
                    heads
                        .map(|x| {
                            mine.iter()
                                .flat_map(|&m| x.layout.boxes[m].xyxy.map(|v| v as f32))
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                (
                    f("pano_instance"),
                    pano.instance[i * hw..(i + 1) * hw].to_vec(),
                ),
                (
                    f("pano_semantic"),
                    classes[i * hw..(i + 1) * hw]
                        .iter()
                        .map(|&c| c as f32)
                        .collect(),
                ),
            ];
            for (file, got) in ints {
                if let Some(e) = read(&file) {
                    check_ints(&mut rep, &file, &got, &e);
                }
            }
        }
    }
    // The original PanopticMeter over every eval batch (metrics.json): the table exactly, SQ/RQ/PQ.
    let metrics = exp.join("metrics.json");
    if metrics.exists() {
        let want = read_json(&metrics);
        let table: Vec<f32> = want["per_class_TP_FP_FN_sumIoU"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .flat_map(|r| {
                        r.as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_f64().unwrap() as f32)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let got: Vec<f32> = meter.table().concat();
        let err = if got.len() == table.len() {
            max_err(&got, &table)
        } else {
            f64::INFINITY
        };
        rep.check("metrics", "metrics.json table", err <= 1e-6, err, 1e-6);
        let v = meter.value();
        for (key, g) in [("SQ", v.sq), ("RQ", v.rq), ("PQ", v.pq)] {
            let e = want[key].as_f64().unwrap_or(f64::NAN);
            let err = (g - e).abs();
            rep.check(
                "metrics",
                &format!("metrics.json {key}"),
                err <= 1e-6,
                err,
                1e-6,
            );
        }
    }
    if !rep.failures.is_empty() {
        rep.eval_failed = true;
    }

    // ---- train steps: PaPsLoss with the ground-truth zones, post warm-up.
    let tdir = case.join("train_step");
    if tdir.join("losses.json").exists() {
        let info = read_json(&tdir.join("losses.json"));
        let cfg = loss_config(conf);
        let batches = flag_list_to_ids(
            reference
                .get("train_batch_order")
                .unwrap_or(&info["batches"]),
        );
        let per_step = info["per_step"].as_array().cloned().unwrap_or_default();
        let centers_want = info["train_centers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Per call of the loss, in order: its terms and train-time centers (the first calls are the checked
        // steps; a diagnosis may call it again afterwards, those entries are past the fixture's steps).
        let notes: std::cell::RefCell<Vec<StepNote>> = Default::default();
        let loss_of = |model: &Paps, ids: &[u64]| {
            let batch = load_batch(&ds, ids, device);
            let inst = batch.instance.clone().expect("instance target");
            let zones: Vec<i64> = inst.chunks(7).map(|p| p[2] as i64).collect();
            let ctx = Ctx::train_without_dropout();
            let out = model.forward(
                &batch.x,
                &batch.days,
                &batch.pad,
                &ctx,
                supmax.then_some(&zones[..]),
                true,
                false,
            );
            let loss = paps_loss(&out, &inst, &cfg);
            notes.borrow_mut().push((
                loss.parts,
                out.centers.iter().map(|c| [c.b, c.y, c.x]).collect(),
            ));
            loss.total
        };
        let steps = TrainSteps {
            rules: &rules,
            tdir: &tdir,
            info: &info,
            batches: &batches,
        };
        steps.check_and_diagnose(&mut rep, &build, &loss_of);
        let notes = notes.into_inner();
        for (s, (parts, centers)) in notes.into_iter().enumerate() {
            if let Some(want) = per_step.get(s) {
                for (j, key) in ["center", "size", "shape", "cls"].iter().enumerate() {
                    let e = want[key].as_f64().unwrap_or(0.0);
                    let rel = (parts[j] as f64 - e).abs() / e.abs().max(1e-12);
                    // 1e-5, or 4× the term's measured move under float32 gradient noise (precision.json,
                    // tests/data/make_paps_cases.py) when the fixture has it.
                    let noise = rules
                        .precision
                        .pointer(&format!("/loss_terms_noise/{s}/{key}"))
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0);
                    let tol = 1e-5f64.max(4.0 * noise);
                    rep.check(
                        "loss",
                        &format!("{key} loss step {}", s + 1),
                        rel <= tol,
                        rel,
                        tol,
                    );
                }
            }
            if let Some(want) = centers_want.get(s) {
                let want: Vec<[usize; 3]> = want
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let v: Vec<usize> = c
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x.as_u64().unwrap() as usize)
                            .collect();
                        [v[0], v[1], v[2]]
                    })
                    .collect();
                check_ints(
                    &mut rep,
                    &format!("train centers step {}", s + 1),
                    &centers
                        .iter()
                        .flatten()
                        .map(|&v| v as f32)
                        .collect::<Vec<_>>(),
                    &want.iter().flatten().map(|&v| v as f32).collect::<Vec<_>>(),
                );
            }
        }
    }
    if rep.failures.is_empty() {
        Outcome::Pass(rep.summary())
    } else {
        Outcome::Fail(rep_fail_text(&rep), rep.eval_failed, rep.explained)
    }
}
