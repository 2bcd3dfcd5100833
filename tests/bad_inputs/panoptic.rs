//! The panoptic cases: PASTIS folders (`datasets/pastis_tiny`) with broken instance annotations and U-TAE + PaPs
//! weight folders (`utae_paps_small`) with the wrong weights, through `train --task panoptic` (rotation 4, one
//! step, with a previous run's results in its folder), `evaluate` (rotation 4, tested on patch 77777, into a
//! fresh folder) and `predict` (every patch, previous predictions in its folder).

use std::path::Path;

use sitsgpu::data::npy;

use crate::common::TmpDir;
use crate::{argv, copy_dir, fixtures, poison, previous_results, run_all, Corpus, Out};

/// The utae_paps_small fixture's widths and shape size.
const SMALL: &str = "--encoder_widths [8,12,16,20] --decoder_widths [4,8,12,20] --out_conv [8,20] \
                     --n_head 4 --d_model 24 --d_k 4 --shape_size 8";
const TRAIN: &str =
    "train --task panoptic --dataset_folder @ --res_dir @ --cpu --epochs 1 --max_steps 1 \
                     --batch_size 1 --fold 4";
const EVAL: &str =
    "evaluate --dataset_folder @ --weight_folder @ --res_dir @ --cpu --fold 4 --batch_size 1";
const PREDICT: &str = "predict --dataset_folder @ --weights @ --out @ --batch_size 2 --cpu";
const MODEL: &str = "Fold_4/model.npz";
const ALL3: &[&str] = &["train", "evaluate", "predict"];

impl Corpus {
    /// The runs of `commands` on `data` with the weight folder `w`, each expected to fail with `expect`.
    fn panoptic_runs(
        &mut self,
        name: &str,
        data: &Path,
        w: &Path,
        cmds: &[&str],
        expect: (&str, &str),
    ) {
        let d = self.dir(&format!("{name} runs"));
        for &cmd in cmds {
            let (cmd, args, out) = match cmd {
                "train" => {
                    let res = d.join("train");
                    let args = argv(&format!("{TRAIN} {SMALL}"), &[data, &res]);
                    ("train", args, previous_results(&res, "train"))
                }
                "train-init" => {
                    let res = d.join("train-init");
                    let t = format!("{TRAIN} {SMALL} --init_weights @");
                    let args = argv(&t, &[data, &res, &w.join(MODEL)]);
                    ("train", args, previous_results(&res, "train"))
                }
                "evaluate" => {
                    let res = d.join("eval");
                    ("evaluate", argv(EVAL, &[data, w, &res]), Out::Fresh(res))
                }
                "predict" => {
                    let out = d.join("pred");
                    let args = argv(PREDICT, &[data, &w.join(MODEL), &out]);
                    ("predict", args, previous_results(&out, "predict"))
                }
                other => panic!("unknown command {other}"),
            };
            self.push(name, cmd, args, expect, out);
        }
    }

    /// A copy of pastis_tiny broken by `f`, run through `cmds` with the intact panoptic weights.
    fn instances(
        &mut self,
        name: &str,
        cmds: &[&str],
        expect: (&str, &str),
        f: impl FnOnce(&Path),
    ) {
        let data = self.dir(name).join("PASTIS");
        copy_dir(&self.fixtures.join("datasets/pastis_tiny"), &data);
        f(&data);
        let w = self.weights.clone();
        self.panoptic_runs(name, &data, &w, cmds, expect);
    }

    /// A copy of the panoptic weight folder broken by `f`, run through `cmds` on the intact dataset.
    fn paps_weights(
        &mut self,
        name: &str,
        cmds: &[&str],
        expect: (&str, &str),
        f: impl FnOnce(&Path),
    ) {
        let w = self.dir(name).join("weights");
        copy_dir(&self.weights, &w);
        f(&w);
        let data = self.fixtures.join("datasets/pastis_tiny");
        self.panoptic_runs(name, &data, &w, cmds, expect);
    }
}

fn instance_cases(c: &mut Corpus) {
    for kind in ["INSTANCES", "HEATMAP", "ZONES"] {
        let file = format!("INSTANCE_ANNOTATIONS/{kind}_77777.npy");
        let f = file.clone();
        c.instances(
            &format!("{kind} missing"),
            ALL3,
            (&file, "no such file|not found|missing"),
            |d| std::fs::remove_file(d.join(&f)).unwrap(),
        );
        let f = file.clone();
        c.instances(
            &format!("{kind} of another size"),
            ALL3,
            (&file, "(H, W)"),
            |d| {
                let a = npy::read_f32(d.join(&f)).unwrap();
                npy::write_f32(d.join(&f), &[16, 64], &a.data).unwrap();
            },
        );
    }
    let file = "INSTANCE_ANNOTATIONS/HEATMAP_77777.npy";
    c.instances("HEATMAP NaN", ALL3, (file, "non-finite"), |d| {
        poison(&d.join(file), 40, f32::NAN)
    });
    let file = "INSTANCE_ANNOTATIONS/INSTANCES_77777.npy";
    c.instances("INSTANCES fractional id", ALL3, (file, "integer"), |d| {
        poison(&d.join(file), 7, 2.5)
    });
    // No INSTANCE_ANNOTATIONS/ at all: training and evaluation need it (predict then runs unlabeled).
    let expect = ("INSTANCE_ANNOTATIONS", "no such file|not found|missing");
    c.instances(
        "INSTANCE_ANNOTATIONS missing",
        &["train", "evaluate"],
        expect,
        |d| std::fs::remove_dir_all(d.join("INSTANCE_ANNOTATIONS")).unwrap(),
    );
}

fn weight_cases(c: &mut Corpus) {
    // A semantic U-TAE checkpoint in a panoptic weight folder: named as another model's weights.
    let semantic = c.fixtures.join("utae_small/weights.npz");
    let cmds = &["evaluate", "predict", "train-init"];
    c.paps_weights(
        "semantic weights for PaPs",
        cmds,
        (MODEL, "another model"),
        |w| {
            std::fs::copy(&semantic, w.join(MODEL)).unwrap();
        },
    );
    // A semantic weight folder evaluated with --task panoptic: its conf.json says so.
    let d = c.dir("semantic folder --task panoptic");
    let sem = d.join("weights");
    crate::weight_folder(&c.fixtures.join("utae_small"), &sem);
    let res = d.join("eval");
    let data = c.fixtures.join("datasets/pastis_tiny");
    let args = argv(&format!("{EVAL} --task panoptic"), &[&data, &sem, &res]);
    c.push(
        "semantic folder, --task panoptic",
        "evaluate",
        args,
        ("conf.json", "semantic"),
        Out::Fresh(res),
    );
    // The reverse: U-TAE + PaPs weights in a semantic U-TAE folder, through the semantic commands.
    let d = c.dir("PaPs weights in a semantic folder");
    let sem = d.join("weights");
    crate::weight_folder(&c.fixtures.join("utae_small"), &sem);
    std::fs::copy(
        c.fixtures.join("utae_paps_small/weights.npz"),
        sem.join(MODEL),
    )
    .unwrap();
    let res = d.join("eval");
    c.push(
        "PaPs weights, semantic folder",
        "evaluate",
        argv(EVAL, &[&data, &sem, &res]),
        (MODEL, "another model"),
        Out::Fresh(res),
    );
    let out = d.join("pred");
    let args = argv(PREDICT, &[&data, &sem.join(MODEL), &out]);
    c.push(
        "PaPs weights, semantic folder",
        "predict",
        args,
        (MODEL, "another model"),
        previous_results(&out, "predict"),
    );
    // A panoptic weight folder whose shape_size does not match its checkpoint.
    c.paps_weights(
        "conf.json other shape_size",
        &["evaluate", "predict"],
        (MODEL, "shape"),
        |w| {
            crate::edit_json(&w.join("conf.json"), |v| {
                v["PaPs"]["shape_size"] = serde_json::json!(16)
            })
        },
    );
}

#[test]
fn panoptic_bad_inputs() {
    let Some(fx) = fixtures() else {
        return;
    };
    let tmp = TmpDir::new("bad_inputs", "panoptic");
    let mut c = Corpus::new(&tmp.0, &fx, "utae_paps_small");
    instance_cases(&mut c);
    weight_cases(&mut c);
    run_all("panoptic", &c.cases);
}
