//! The semantic cases: PASTIS folders (`datasets/pastis_tiny`) and U-TAE weights (`utae_small`) broken one way
//! each, through `train` (rotation 4, which reads every patch, with a previous run's results in its folder),
//! `evaluate` (rotation 4, tested on fold 3 = patch 77777, into a fresh folder), `predict` (every patch, with
//! previous predictions in its folder) and `convert-weights`; and `synth` into a foreign folder.

use std::path::Path;

use serde_json::json;
use sitsgpu::data::npy;
use sitsgpu::data::state_dict::{read_npz, write_npz, Values};
use sitsgpu::data::torch_writer::{write_torch_checkpoint, write_torch_checkpoint_legacy};

use crate::common::TmpDir;
use crate::{
    argv, copy_dir, edit_json, fixtures, poison, previous_results, raw_npy, reshape, run_all,
    scribble, slice_axis, snapshot, truncate, Corpus, Out,
};

/// The small U-TAE's flags (the utae_small fixture's widths).
const SMALL: &str = "--encoder_widths [8,12,16,20] --decoder_widths [4,8,12,20] --out_conv [8,20] \
                     --n_head 4 --d_model 24 --d_k 4";
const TRAIN: &str = "train --dataset_folder @ --res_dir @ --cpu";
/// One optimiser step of one patch.
const ONE_STEP: &str = "--epochs 1 --max_steps 1 --batch_size 1";
const EVAL: &str = "evaluate --dataset_folder @ --weight_folder @ --res_dir @ --cpu";

const ALL3: &[&str] = &["train", "evaluate", "predict"];
const LABELED: &[&str] = &["train", "evaluate"];
const WEIGHTS: &[&str] = &["evaluate", "predict", "convert-weights", "train"];

/// Patch 77777: fold 3, T = 5, (5, 10, 32, 32) int16; read by every command.
const S2: &str = "DATA_S2/S2_77777.npy";
const TARGET: &str = "ANNOTATIONS/TARGET_77777.npy";
const MD: &str = "metadata.geojson";
const NORM: &str = "NORM_S2_patch.json";
const MODEL: &str = "Fold_4/model.npz";
const PTH: &str = "Fold_4/model.pth.tar";

impl Corpus {
    /// The runs of `commands` on the dataset `data`, each expected to fail with `expect` (path, keyword).
    fn semantic_runs(&mut self, name: &str, data: &Path, commands: &[&str], expect: (&str, &str)) {
        let d = self.dir(&format!("{name} runs"));
        let w = self.weights.clone();
        for &cmd in commands {
            let (cmd, args, out) = match cmd {
                "train" => {
                    let res = d.join("train");
                    let args = argv(
                        &format!("{TRAIN} {ONE_STEP} --fold 4 {SMALL}"),
                        &[data, &res],
                    );
                    ("train", args, previous_results(&res, "train"))
                }
                "evaluate" => {
                    let res = d.join("eval");
                    let args = argv(
                        &format!("{EVAL} --fold 4 --batch_size 1"),
                        &[data, &w, &res],
                    );
                    ("evaluate", args, Out::Fresh(res))
                }
                "predict" => {
                    let out = d.join("pred");
                    let template =
                        "predict --dataset_folder @ --weights @ --out @ --batch_size 2 --cpu";
                    let args = argv(template, &[data, &w.join(MODEL), &out]);
                    ("predict", args, previous_results(&out, "predict"))
                }
                other => panic!("unknown command {other}"),
            };
            self.push(name, cmd, args, expect, out);
        }
    }

    /// A copy of pastis_tiny broken by `f` (given the copy's folder), run through `commands`.
    fn pastis(&mut self, name: &str, cmds: &[&str], expect: (&str, &str), f: impl FnOnce(&Path)) {
        let data = self.dir(name).join("PASTIS");
        copy_dir(&self.fixtures.join("datasets/pastis_tiny"), &data);
        f(&data);
        self.semantic_runs(name, &data, cmds, expect);
    }

    /// A copy of the weight folder broken by `f`, through `evaluate` (fold 4, previous results in the output
    /// folder), `predict --weights Fold_4/<file>`, `convert-weights` and `train --init_weights`.
    fn utae_weights(
        &mut self,
        name: &str,
        file: &str,
        cmds: &[&str],
        expect: (&str, &str),
        f: impl FnOnce(&Path),
    ) {
        let d = self.dir(name);
        let w = d.join("weights");
        copy_dir(&self.weights, &w);
        f(&w);
        let ckpt = w.join("Fold_4").join(file);
        let data = self.fixtures.join("datasets/pastis_tiny");
        for &cmd in cmds {
            let (cmd, args, out) = match cmd {
                "evaluate" => {
                    let res = d.join("eval");
                    let args = argv(
                        &format!("{EVAL} --fold 4 --batch_size 1"),
                        &[&data, &w, &res],
                    );
                    ("evaluate", args, previous_results(&res, "evaluate"))
                }
                "predict" => {
                    let out = d.join("pred");
                    let args = argv(
                        "predict --dataset_folder @ --weights @ --out @ --cpu",
                        &[&data, &ckpt, &out],
                    );
                    ("predict", args, Out::Fresh(out))
                }
                "convert-weights" => {
                    let (out, flag) = match file.ends_with(".npz") {
                        true => (d.join("converted.pth.tar"), "--to-torch"),
                        false => (d.join("converted.npz"), ""),
                    };
                    let args = argv(
                        &format!("convert-weights --checkpoint @ --out @ {flag}"),
                        &[&ckpt, &out],
                    );
                    ("convert-weights", args, Out::Fresh(out))
                }
                "train" => {
                    let res = d.join("train");
                    let template = format!("{TRAIN} {ONE_STEP} --fold 4 --init_weights @ {SMALL}");
                    let args = argv(&template, &[&data, &res, &ckpt]);
                    ("train", args, previous_results(&res, "train"))
                }
                other => panic!("unknown command {other}"),
            };
            self.push(name, cmd, args, expect, out);
        }
    }
}

/// The S2 series of patch 77777 broken every way.
fn s2_cases(c: &mut Corpus) {
    c.pastis("S2 truncated", ALL3, (S2, "truncated"), |d| {
        truncate(&d.join(S2), -100)
    });
    c.pastis("S2 header cut", ALL3, (S2, "npy"), |d| {
        truncate(&d.join(S2), 40)
    });
    c.pastis("S2 empty file", ALL3, (S2, "npy"), |d| {
        truncate(&d.join(S2), 0)
    });
    c.pastis("S2 garbled magic", ALL3, (S2, "not a valid .npy"), |d| {
        scribble(&d.join(S2), b"GARBLE")
    });
    c.pastis("S2 garbled header dict", ALL3, (S2, "npy"), |d| {
        let dict = "{'descr': '<i2', 'fortran_order': False, 'shape': (5, 10, 32, 32), 'sh@pe': ((";
        raw_npy(&d.join(S2), dict, &[0u8; 64])
    });
    c.pastis("S2 absurd shape", ALL3, (S2, "absurdly large"), |d| {
        let dict = "{'descr': '<i2', 'fortran_order': False, 'shape': (5, 10, 99999999999, 99999999999), }";
        raw_npy(&d.join(S2), dict, &[0u8; 64])
    });
    for (dtype, size) in [("<U4", 16), ("<c8", 8)] {
        c.pastis(
            &format!("S2 dtype {dtype}"),
            ALL3,
            (S2, "unsupported dtype"),
            |d| {
                let dict = format!(
                    "{{'descr': '{dtype}', 'fortran_order': False, 'shape': (5, 10, 32, 32), }}"
                );
                raw_npy(&d.join(S2), &dict, &vec![0u8; 5 * 10 * 32 * 32 * size])
            },
        );
    }
    c.pastis("S2 Fortran order", ALL3, (S2, "Fortran"), |d| {
        let dict = "{'descr': '<i2', 'fortran_order': True, 'shape': (5, 10, 32, 32), }";
        raw_npy(&d.join(S2), dict, &vec![1u8; 5 * 10 * 32 * 32 * 2])
    });
    c.pastis("S2 4 bands", ALL3, (S2, "expected shape"), |d| {
        slice_axis(&d.join(S2), 1, 4)
    });
    c.pastis("S2 three axes", ALL3, (S2, "expected shape"), |d| {
        reshape(&d.join(S2), &[50, 32, 32])
    });
    c.pastis("S2 frames != dates", ALL3, (S2, "5 distinct dates"), |d| {
        slice_axis(&d.join(S2), 0, 4)
    });
    let at = ((2 * 10 + 3) * 32 + 4) * 32 + 5;
    c.pastis(
        "S2 NaN",
        ALL3,
        (S2, "NaN at (t, c, y, x) = (2, 3, 4, 5)"),
        |d| poison(&d.join(S2), at, f32::NAN),
    );
    c.pastis("S2 +Inf", ALL3, (S2, "non-finite value inf"), |d| {
        poison(&d.join(S2), 7, f32::INFINITY)
    });
    c.pastis("S2 -Inf", ALL3, (S2, "non-finite value -inf"), |d| {
        poison(&d.join(S2), 11, -f32::INFINITY)
    });
    c.pastis(
        "S2 16 x 16, TARGET 32 x 32",
        ALL3,
        (TARGET, "expected shape"),
        |d| {
            let p = d.join(S2);
            let a = npy::read_f32(&p).unwrap();
            let mut v: Vec<i16> = Vec::new();
            for plane in a.data.chunks(32 * 32) {
                for y in 0..16 {
                    v.extend(plane[y * 32..y * 32 + 16].iter().map(|&x| x as i16));
                }
            }
            npy::write(&p, &[5, 10, 16, 16], &v).unwrap();
        },
    );
    c.pastis("S2 missing", ALL3, (S2, "does not exist"), |d| {
        std::fs::remove_file(d.join(S2)).unwrap()
    });
    c.pastis(
        "DATA_S2 missing",
        ALL3,
        ("DATA_S2", "does not exist"),
        |d| std::fs::remove_dir_all(d.join("DATA_S2")).unwrap(),
    );
    c.pastis("S2 is a folder", ALL3, (S2, "not a file"), |d| {
        std::fs::remove_file(d.join(S2)).unwrap();
        std::fs::create_dir(d.join(S2)).unwrap();
    });
}

/// The annotations, metadata.geojson and NORM_S2_patch.json broken every way.
fn annotation_and_json_cases(c: &mut Corpus) {
    c.pastis("TARGET truncated", LABELED, (TARGET, "truncated"), |d| {
        truncate(&d.join(TARGET), -10)
    });
    c.pastis("TARGET NaN", LABELED, (TARGET, "non-finite class"), |d| {
        poison(&d.join(TARGET), 40, f32::NAN)
    });
    c.pastis(
        "TARGET class 20 of 20",
        LABELED,
        (TARGET, "class 20"),
        |d| poison(&d.join(TARGET), 33, 20.0),
    );
    c.pastis("TARGET class -1", LABELED, (TARGET, "class -1"), |d| {
        poison(&d.join(TARGET), 33, -1.0)
    });
    c.pastis("TARGET class 2.5", LABELED, (TARGET, "class 2.5"), |d| {
        poison(&d.join(TARGET), 5, 2.5)
    });
    c.pastis("TARGET missing", ALL3, (TARGET, "does not exist"), |d| {
        std::fs::remove_file(d.join(TARGET)).unwrap()
    });
    // predict runs without ANNOTATIONS/ (a user's own area); training and evaluation need it.
    c.pastis(
        "ANNOTATIONS missing",
        LABELED,
        ("TARGET_", "does not exist"),
        |d| std::fs::remove_dir_all(d.join("ANNOTATIONS")).unwrap(),
    );
    c.pastis("metadata missing", ALL3, (MD, "No such file"), |d| {
        std::fs::remove_file(d.join(MD)).unwrap()
    });
    c.pastis("metadata truncated", ALL3, (MD, "not valid JSON"), |d| {
        truncate(&d.join(MD), -30)
    });
    c.pastis("metadata a list", ALL3, (MD, "FeatureCollection"), |d| {
        std::fs::write(d.join(MD), "[1]").unwrap()
    });
    c.pastis(
        "metadata without dates-S2",
        ALL3,
        (MD, "\"dates-S2\" is missing"),
        |d| {
            edit_json(&d.join(MD), |v| {
                v["features"][0]["properties"]
                    .as_object_mut()
                    .unwrap()
                    .remove("dates-S2");
            })
        },
    );
    c.pastis(
        "metadata bad date",
        ALL3,
        (MD, "not a date YYYYMMDD"),
        |d| {
            edit_json(&d.join(MD), |v| {
                v["features"][1]["properties"]["dates-S2"] = json!({"0": 20181345})
            })
        },
    );
    c.pastis("metadata fold 9", ALL3, (MD, "\"Fold\" is 9"), |d| {
        edit_json(&d.join(MD), |v| {
            v["features"][2]["properties"]["Fold"] = json!(9)
        })
    });
    c.pastis("metadata duplicate id", ALL3, (MD, "duplicate"), |d| {
        edit_json(&d.join(MD), |v| {
            v["features"][1]["properties"]["ID_PATCH"] =
                v["features"][0]["properties"]["ID_PATCH"].clone()
        })
    });
    c.pastis(
        "metadata unknown patch",
        ALL3,
        ("S2_99999.npy", "does not exist"),
        |d| {
            edit_json(&d.join(MD), |v| {
                let mut f = v["features"][0].clone();
                f["properties"]["ID_PATCH"] = json!(99999);
                f["properties"]["Fold"] = json!(3);
                v["features"].as_array_mut().unwrap().push(f);
            })
        },
    );
    c.pastis("empty dataset", ALL3, (MD, "no patch"), |d| {
        edit_json(&d.join(MD), |v| v["features"] = json!([]))
    });
    c.pastis("norm missing", ALL3, (NORM, "No such file"), |d| {
        std::fs::remove_file(d.join(NORM)).unwrap()
    });
    c.pastis("norm broken JSON", ALL3, (NORM, "not valid JSON"), |d| {
        std::fs::write(d.join(NORM), "{\"Fold_1\": {\"mean\": [1, 2,").unwrap()
    });
    c.pastis("norm without Fold_3", ALL3, (NORM, "\"Fold_3\""), |d| {
        edit_json(&d.join(NORM), |v| {
            drop(v.as_object_mut().unwrap().remove("Fold_3"))
        })
    });
    c.pastis("norm 9 bands", ALL3, (NORM, "expected 10"), |d| {
        edit_json(&d.join(NORM), |v| {
            (1..=5).for_each(|f| drop(v[format!("Fold_{f}")]["std"].as_array_mut().unwrap().pop()))
        })
    });
    c.pastis(
        "norm zero std",
        ALL3,
        (NORM, "not a positive number"),
        |d| {
            edit_json(&d.join(NORM), |v| {
                (1..=5).for_each(|f| v[format!("Fold_{f}")]["std"][2] = json!(0.0))
            })
        },
    );
}

/// Folds, splits, batches and folders that do not fit.
fn split_cases(c: &mut Corpus) {
    let data = c.fixtures.join("datasets/pastis_tiny");
    let w = c.weights.clone();
    let d = c.dir("splits");
    // Rotation 1 tests on fold 5, which holds no patch of pastis_tiny.
    let res = d.join("train_r1");
    let args = argv(
        &format!("{TRAIN} {ONE_STEP} --fold 1 {SMALL}"),
        &[&data, &res],
    );
    c.push(
        "empty test fold",
        "train",
        args,
        (MD, "no patch in fold 5"),
        previous_results(&res, "train"),
    );
    let res = d.join("eval_r1");
    let args = argv(
        &format!("{EVAL} --fold 1 --keep_last_batch"),
        &[&data, &w, &res],
    );
    c.push(
        "empty test fold",
        "evaluate",
        args,
        (MD, "no patch in fold 5"),
        Out::Fresh(res),
    );
    let template = "predict --dataset_folder @ --weights @ --out @ --cpu --folds";
    let out = d.join("pred5");
    let args = argv(
        &format!("{template} 5"),
        &[&data, &w.join("Fold_1/model.npz"), &out],
    );
    c.push(
        "empty fold",
        "predict",
        args,
        (MD, "no patch in fold 5"),
        Out::Fresh(out),
    );
    let out = d.join("pred9");
    let args = argv(
        &format!("{template} 9"),
        &[&data, &w.join("Fold_1/model.npz"), &out],
    );
    c.push(
        "unknown fold 9",
        "predict",
        args,
        ("pastis_tiny", "unknown fold 9"),
        Out::Fresh(out),
    );
    let res = d.join("eval7");
    let args = argv(&format!("{EVAL} --fold 7"), &[&data, &w, &res]);
    c.push(
        "unknown fold 7",
        "evaluate",
        args,
        ("--fold 7", "expected 1..5"),
        Out::Fresh(res),
    );
    // Rotation 4 trains on 2 patches: nothing to train on with batches of 3 (drop_last).
    let res = d.join("train_b3");
    let args = argv(
        &format!("{TRAIN} --fold 4 --epochs 1 --batch_size 3 {SMALL}"),
        &[&data, &res],
    );
    let expect = (MD, "nothing would be trained on");
    c.push(
        "training split < batch",
        "train",
        args,
        expect,
        previous_results(&res, "train"),
    );
    // Rotation 4 tests on fold 3 (one patch): nothing evaluated with batches of 2 (drop_last).
    let res = d.join("eval_b2");
    let args = argv(
        &format!("{EVAL} --fold 4 --batch_size 2"),
        &[&data, &w, &res],
    );
    c.push(
        "test split < batch",
        "evaluate",
        args,
        (MD, "--keep_last_batch"),
        Out::Fresh(res),
    );
    // --resume into results whose Fold_4/last.npz is not a training state (garbled; weights only).
    for (name, keyword, weights_only) in [
        ("resume: last.npz garbled", "not a readable .npz", false),
        (
            "resume: last.npz holds weights only",
            "not a sitsgpu training state",
            true,
        ),
    ] {
        let res = d.join(if weights_only {
            "resume_weights"
        } else {
            "resume"
        });
        let mut out = previous_results(&res, "train");
        if weights_only {
            std::fs::copy(
                c.fixtures.join("utae_small/weights.npz"),
                res.join("Fold_4/last.npz"),
            )
            .unwrap();
            out = Out::Kept(res.clone(), snapshot(&res));
        }
        let args = argv(
            &format!("{TRAIN} --fold 4 --epochs 2 --batch_size 1 --resume {SMALL}"),
            &[&data, &res],
        );
        c.push(name, "train", args, ("Fold_4/last.npz", keyword), out);
    }
    // A dataset folder that does not exist, and a pixel-set folder given to the semantic task.
    let nowhere = d.join("no_such_dataset");
    c.semantic_runs(
        "dataset folder missing",
        &nowhere,
        ALL3,
        ("no_such_dataset", "does not exist"),
    );
    let s2agri = c.fixtures.join("datasets/s2agri_tiny");
    c.semantic_runs(
        "pixel-set folder",
        &s2agri,
        ALL3,
        ("s2agri_tiny/metadata.geojson", "No such file"),
    );
    // A U-TAE weight folder with --task pixelset.
    let res = d.join("eval_task");
    let args = argv(
        &format!("{EVAL} --task pixelset --fold 1"),
        &[&s2agri, &w, &res],
    );
    let expect = ("conf.json", "describes a semantic model");
    c.push(
        "U-TAE folder with --task pixelset",
        "evaluate",
        args,
        expect,
        Out::Fresh(res),
    );
    // synth into a folder that holds something else.
    let foreign = d.join("my_thesis");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("chapter1.tex"), "precious").unwrap();
    for format in ["pastis", "pixelset"] {
        let args = argv(
            &format!("synth --format {format} --out @ --patches 5 --size 8"),
            &[&foreign],
        );
        let out = Out::Kept(foreign.clone(), snapshot(&foreign));
        c.push(
            &format!("synth {format} into a foreign folder"),
            "synth",
            args,
            ("my_thesis", "not empty"),
            out,
        );
    }
}

/// Checkpoints broken every way.
fn weight_cases(c: &mut Corpus) {
    c.utae_weights("npz truncated", "model.npz", WEIGHTS, (MODEL, "npz"), |w| {
        truncate(&w.join(MODEL), -200)
    });
    c.utae_weights("npz garbled", "model.npz", WEIGHTS, (MODEL, "npz"), |w| {
        std::fs::write(w.join(MODEL), b"this is not a zip archive at all").unwrap()
    });
    c.utae_weights("npz empty", "model.npz", WEIGHTS, (MODEL, "npz"), |w| {
        truncate(&w.join(MODEL), 0)
    });
    c.utae_weights(
        "npz NaN weight",
        "model.npz",
        WEIGHTS,
        (MODEL, "non-finite value NaN"),
        |w| {
            let mut sd = read_npz(w.join(MODEL)).unwrap();
            let key = sd.keys().next().unwrap().to_string();
            if let Values::F32(v) = &mut sd.get_mut(&key).unwrap().values {
                v[3] = f32::NAN;
            }
            write_npz(w.join(MODEL), &sd).unwrap();
        },
    );
    let pse = c.fixtures.join("pse_ltae_small/weights.npz");
    c.utae_weights(
        "PSE weights for U-TAE",
        "model.npz",
        WEIGHTS,
        (MODEL, "another model"),
        |w| {
            std::fs::copy(&pse, w.join(MODEL)).unwrap();
        },
    );
    let expect = ("Fold_4/model", "no checkpoint|No such file");
    c.utae_weights("checkpoint missing", "model.npz", WEIGHTS, expect, |w| {
        std::fs::remove_file(w.join(MODEL)).unwrap()
    });
    for legacy in [false, true] {
        let name = format!("pth.tar truncated (legacy {legacy})");
        c.utae_weights(&name, "model.pth.tar", WEIGHTS, (PTH, "truncated"), |w| {
            let sd = read_npz(w.join(MODEL)).unwrap();
            std::fs::remove_file(w.join(MODEL)).unwrap();
            match legacy {
                false => write_torch_checkpoint(w.join(PTH), &sd, Some(3)).unwrap(),
                true => write_torch_checkpoint_legacy(w.join(PTH), &sd, Some(3)).unwrap(),
            }
            truncate(&w.join(PTH), -5000);
        });
    }
    let expect = (PTH, "unreadable PyTorch checkpoint");
    c.utae_weights("pth.tar garbled", "model.pth.tar", WEIGHTS, expect, |w| {
        std::fs::remove_file(w.join(MODEL)).unwrap();
        std::fs::write(w.join(PTH), b"\x80\x02garbage that is no pickle").unwrap();
    });
    let two = &["evaluate", "predict"];
    c.utae_weights(
        "conf.json missing",
        "model.npz",
        two,
        ("conf.json", "conf.json"),
        |w| std::fs::remove_file(w.join("conf.json")).unwrap(),
    );
    let three = &["evaluate", "predict", "convert-weights"];
    c.utae_weights(
        "conf.json broken",
        "model.npz",
        three,
        ("conf.json", "invalid JSON"),
        |w| truncate(&w.join("conf.json"), 50),
    );
    c.utae_weights(
        "conf.json other d_k",
        "model.npz",
        three,
        (MODEL, "shape"),
        |w| edit_json(&w.join("conf.json"), |v| v["d_k"] = json!(8)),
    );
}

#[test]
fn semantic_bad_inputs() {
    let Some(fx) = fixtures() else {
        return;
    };
    let tmp = TmpDir::new("bad_inputs", "semantic");
    let mut c = Corpus::new(&tmp.0, &fx, "utae_small");
    s2_cases(&mut c);
    annotation_and_json_cases(&mut c);
    split_cases(&mut c);
    weight_cases(&mut c);
    run_all("semantic", &c.cases);
}
