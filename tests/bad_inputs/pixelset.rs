//! The pixel-set cases: Sentinel-Agri folders (`datasets/s2agri_tiny`) and PSE + L-TAE weights
//! (`pse_ltae_small`) broken one way each, through `train --task pixelset` (fold 1, with a previous run's results
//! in its folder), `evaluate` (fold 1, into a fresh folder), `predict` (the 5-fold ensemble, with previous
//! predictions in its folder) and `convert-weights`.

use std::path::Path;

use serde_json::json;
use sitsgpu::data::npy;
use sitsgpu::data::state_dict::{read_npz, write_npz, Values};
use sitsgpu::data::torch_writer::write_torch_checkpoint;

use crate::common::TmpDir;
use crate::{
    argv, copy_dir, edit_json, fixtures, poison, previous_results, raw_npy, run_all, scribble,
    slice_axis, truncate, Corpus, Out,
};

const TRAIN: &str = "train --task pixelset --dataset_folder @ --res_dir @ --batch_size 3 --cpu";
/// One optimiser step.
const ONE_STEP: &str = "--epochs 1 --max_steps 1";
const EVAL: &str = "evaluate --dataset_folder @ --weight_folder @ --res_dir @ --cpu";
const ENSEMBLE: &str = "predict --dataset_folder @ --weight_folder @ --out @ --cpu";

const ALL3: &[&str] = &["train", "evaluate", "predict"];
const WEIGHTS: &[&str] = &["evaluate", "predict", "convert-weights", "train"];

/// Parcel 150: (24, 10, 17) int16, of a kept class (5, 11, 19, 150, 333, 2048 are; 44 is filtered out).
const PARCEL: &str = "DATA/150.npy";
const LABELS: &str = "META/labels.json";
const DATES: &str = "META/dates.json";
const GEOMFEAT: &str = "META/geomfeat.json";
const PKL: &str = "S2-2017-T31TFM-meanstd.pkl";
const MODEL: &str = "Fold_1/model.npz";

impl Corpus {
    /// The runs of `commands` on the dataset `data`, each expected to fail with `expect` (path, keyword).
    fn pixelset_runs(&mut self, name: &str, data: &Path, commands: &[&str], expect: (&str, &str)) {
        let d = self.dir(&format!("{name} runs"));
        let w = self.weights.clone();
        for &cmd in commands {
            let (cmd, args, out) = match cmd {
                "train" => {
                    let res = d.join("train");
                    let args = argv(&format!("{TRAIN} {ONE_STEP} --fold 1"), &[data, &res]);
                    ("train", args, previous_results(&res, "train"))
                }
                "evaluate" => {
                    let res = d.join("eval");
                    let args = argv(&format!("{EVAL} --fold 1"), &[data, &w, &res]);
                    ("evaluate", args, Out::Fresh(res))
                }
                "predict" => {
                    let out = d.join("pred");
                    let args = argv(ENSEMBLE, &[data, &w, &out]);
                    ("predict", args, previous_results(&out, "predict"))
                }
                other => panic!("unknown command {other}"),
            };
            self.push(name, cmd, args, expect, out);
        }
    }

    /// A copy of s2agri_tiny broken by `f` (given the copy's folder), run through `commands`.
    fn s2agri(&mut self, name: &str, cmds: &[&str], expect: (&str, &str), f: impl FnOnce(&Path)) {
        let data = self.dir(name).join("S2AGRI");
        copy_dir(&self.fixtures.join("datasets/s2agri_tiny"), &data);
        f(&data);
        self.pixelset_runs(name, &data, cmds, expect);
    }

    /// A copy of the weight folder broken by `f`, through `evaluate` (fold 1, previous results in the output
    /// folder), `predict --weight_folder`, `convert-weights` of Fold_1/<file> and `train --init_weights`.
    fn pse_weights(
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
        let ckpt = w.join("Fold_1").join(file);
        let data = self.fixtures.join("datasets/s2agri_tiny");
        for &cmd in cmds {
            let (cmd, args, out) = match cmd {
                "evaluate" => {
                    let res = d.join("eval");
                    let args = argv(&format!("{EVAL} --fold 1"), &[&data, &w, &res]);
                    ("evaluate", args, previous_results(&res, "evaluate"))
                }
                "predict" => {
                    let out = d.join("pred");
                    (
                        "predict",
                        argv(ENSEMBLE, &[&data, &w, &out]),
                        Out::Fresh(out),
                    )
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
                    let args = argv(
                        &format!("{TRAIN} {ONE_STEP} --fold 1 --init_weights @"),
                        &[&data, &res, &ckpt],
                    );
                    ("train", args, previous_results(&res, "train"))
                }
                other => panic!("unknown command {other}"),
            };
            self.push(name, cmd, args, expect, out);
        }
    }
}

/// Parcel files broken every way.
fn parcel_cases(c: &mut Corpus) {
    let p = PARCEL;
    c.s2agri("parcel truncated", ALL3, (p, "truncated"), |d| {
        truncate(&d.join(p), -20)
    });
    c.s2agri("parcel header cut", ALL3, (p, "truncated"), |d| {
        truncate(&d.join(p), 30)
    });
    c.s2agri("parcel empty file", ALL3, (p, "not a valid .npy"), |d| {
        truncate(&d.join(p), 0)
    });
    c.s2agri("parcel garbled magic", ALL3, (p, "not a valid .npy"), |d| {
        scribble(&d.join(p), b"\x93xxxxx")
    });
    c.s2agri("parcel absurd shape", ALL3, (p, "absurdly large"), |d| {
        let dict = "{'descr': '<i2', 'fortran_order': False, 'shape': (24, 10, 99999999999999), }";
        raw_npy(&d.join(p), dict, &[0u8; 64])
    });
    c.s2agri("parcel object dtype", ALL3, (p, "type"), |d| {
        raw_npy(
            &d.join(p),
            "{'descr': '|O', 'fortran_order': False, 'shape': (24, 10, 3), }",
            &[0u8; 64],
        )
    });
    c.s2agri("parcel 2-D", ALL3, (p, "T x C x S"), |d| {
        let a = npy::read_f32(d.join(p)).unwrap();
        let v: Vec<i16> = a.data.iter().map(|&x| x as i16).collect();
        npy::write(d.join(p), &[240, a.shape[2]], &v).unwrap();
    });
    c.s2agri("parcel 23 dates of 24", ALL3, (p, "23 dates"), |d| {
        slice_axis(&d.join(p), 0, 23)
    });
    c.s2agri("parcel 9 bands", ALL3, (p, "9 bands"), |d| {
        slice_axis(&d.join(p), 1, 9)
    });
    c.s2agri(
        "parcel NaN",
        ALL3,
        (p, "NaN at (t, c, s) = (0, 0, 5)"),
        |d| poison(&d.join(p), 5, f32::NAN),
    );
    c.s2agri("parcel Inf", ALL3, (p, "non-finite value inf"), |d| {
        poison(&d.join(p), 0, f32::INFINITY)
    });
    c.s2agri(
        "parcel not in labels.json",
        ALL3,
        (LABELS, "parcel 999"),
        |d| {
            std::fs::copy(d.join(p), d.join("DATA/999.npy")).unwrap();
        },
    );
    c.s2agri(
        "parcel not an id",
        ALL3,
        ("DATA/parcel_a.npy", "integer ids"),
        |d| {
            std::fs::copy(d.join(p), d.join("DATA/parcel_a.npy")).unwrap();
        },
    );
    c.s2agri("DATA missing", ALL3, ("DATA", "No such file"), |d| {
        std::fs::remove_dir_all(d.join("DATA")).unwrap()
    });
    c.s2agri("empty dataset", ALL3, ("DATA", "no <pid>.npy"), |d| {
        for e in std::fs::read_dir(d.join("DATA")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    });
    c.s2agri(
        "no parcel of the 20 classes",
        ALL3,
        (LABELS, "20 classes"),
        |d| {
            edit_json(&d.join(LABELS), |v| {
                v["label_44class"]
                    .as_object_mut()
                    .unwrap()
                    .values_mut()
                    .for_each(|l| *l = json!(2))
            })
        },
    );
}

/// META/*.json and the normalisation statistics broken every way.
fn meta_cases(c: &mut Corpus) {
    let rm = |d: &Path, f: &str| std::fs::remove_file(d.join(f)).unwrap();
    c.s2agri("labels missing", ALL3, (LABELS, "No such file"), |d| {
        rm(d, LABELS)
    });
    c.s2agri("labels broken JSON", ALL3, (LABELS, "invalid JSON"), |d| {
        truncate(&d.join(LABELS), -10)
    });
    c.s2agri(
        "labels without label_44class",
        ALL3,
        (LABELS, "no nomenclature \"label_44class\""),
        |d| std::fs::write(d.join(LABELS), "{\"label_19class\": {}}").unwrap(),
    );
    c.s2agri("label not an integer", ALL3, (LABELS, "parcel 150"), |d| {
        edit_json(&d.join(LABELS), |v| {
            v["label_44class"]["150"] = json!("wheat")
        })
    });
    c.s2agri("dates missing", ALL3, (DATES, "No such file"), |d| {
        rm(d, DATES)
    });
    c.s2agri("dates broken JSON", ALL3, (DATES, "invalid JSON"), |d| {
        truncate(&d.join(DATES), 20)
    });
    c.s2agri(
        "dates key missing",
        ALL3,
        (DATES, "missing key \"7\""),
        |d| {
            edit_json(&d.join(DATES), |v| {
                drop(v.as_object_mut().unwrap().remove("7"))
            })
        },
    );
    c.s2agri(
        "dates bad value",
        ALL3,
        (DATES, "not a YYYYMMDD date"),
        |d| edit_json(&d.join(DATES), |v| v["3"] = json!(20171350)),
    );
    c.s2agri(
        "23 dates for 24 frames",
        ALL3,
        ("dates.json lists 23", "24 dates"),
        |d| {
            edit_json(&d.join(DATES), |v| {
                drop(v.as_object_mut().unwrap().remove("23"))
            })
        },
    );
    c.s2agri("geomfeat missing", ALL3, (GEOMFEAT, "No such file"), |d| {
        rm(d, GEOMFEAT)
    });
    c.s2agri(
        "geomfeat broken JSON",
        ALL3,
        (GEOMFEAT, "invalid JSON"),
        |d| std::fs::write(d.join(GEOMFEAT), "{\"5\": [1, 2, 3, ").unwrap(),
    );
    c.s2agri(
        "geomfeat without parcel 150",
        ALL3,
        (GEOMFEAT, "parcel 150"),
        |d| {
            edit_json(&d.join(GEOMFEAT), |v| {
                drop(v.as_object_mut().unwrap().remove("150"))
            })
        },
    );
    // JSON has no NaN, but Python's json.dump writes one (allow_nan=True by default).
    c.s2agri("geomfeat NaN", ALL3, (GEOMFEAT, "invalid JSON"), |d| {
        edit_json(&d.join(GEOMFEAT), |v| v["150"][0] = json!(123456.75));
        let text = std::fs::read_to_string(d.join(GEOMFEAT)).unwrap();
        std::fs::write(d.join(GEOMFEAT), text.replace("123456.75", "NaN")).unwrap();
    });
    c.s2agri("norm pickle truncated", ALL3, (PKL, "truncated"), |d| {
        truncate(&d.join(PKL), -40)
    });
    c.s2agri(
        "norm pickle garbled",
        ALL3,
        (PKL, "unsupported pickle opcode"),
        |d| std::fs::write(d.join(PKL), b"\x80\x04not a pickle of two arrays").unwrap(),
    );
    c.s2agri(
        "norm files missing",
        ALL3,
        ("meanstd.json", "no normalisation statistics"),
        |d| {
            rm(d, PKL);
            rm(d, "meanstd.json");
        },
    );
    c.s2agri(
        "norm json zero std",
        ALL3,
        ("meanstd.json", "not a positive number"),
        |d| {
            rm(d, PKL);
            edit_json(&d.join("meanstd.json"), |v| v["std"][0][0] = json!(0.0));
        },
    );
}

/// Splits and folders that do not fit.
fn split_cases(c: &mut Corpus) {
    let data = c.fixtures.join("datasets/s2agri_tiny");
    let w = c.weights.clone();
    let d = c.dir("splits");
    // --kfold 2 over 6 parcels: validation takes the 3 parcels left after the test fold, training none.
    let res = d.join("kfold2");
    let args = argv(&format!("{TRAIN} {ONE_STEP} --kfold 2"), &[&data, &res]);
    let expect = ("s2agri_tiny", "training split is empty");
    c.push(
        "empty training split",
        "train",
        args,
        expect,
        previous_results(&res, "train"),
    );
    let res = d.join("kfold7");
    let args = argv(&format!("{TRAIN} {ONE_STEP} --kfold 7"), &[&data, &res]);
    c.push(
        "more folds than parcels",
        "train",
        args,
        ("s2agri_tiny", "6 samples"),
        Out::Fresh(res),
    );
    let res = d.join("eval9");
    let args = argv(&format!("{EVAL} --fold 9"), &[&data, &w, &res]);
    c.push(
        "unknown fold 9",
        "evaluate",
        args,
        ("--fold 9", "expected 1..=5"),
        Out::Fresh(res),
    );
    // --resume into results whose Fold_4/last.npz is not a training state.
    let res = d.join("resume");
    let args = argv(
        &format!("{TRAIN} --fold 4 --epochs 2 --resume"),
        &[&data, &res],
    );
    let expect = ("Fold_4/last.npz", "not a readable .npz");
    c.push(
        "resume: last.npz garbled",
        "train",
        args,
        expect,
        previous_results(&res, "train"),
    );
    // A PASTIS folder given to the pixel-set task; a PSE weight folder with --task semantic.
    let pastis = c.fixtures.join("datasets/pastis_tiny");
    c.pixelset_runs(
        "PASTIS folder",
        &pastis,
        ALL3,
        ("pastis_tiny/DATA", "No such file"),
    );
    let expect = ("conf.json", "describes a pixelset model");
    let res = d.join("eval_task");
    let args = argv(
        &format!("{EVAL} --task semantic --fold 4"),
        &[&pastis, &w, &res],
    );
    c.push(
        "PSE folder with --task semantic",
        "evaluate",
        args,
        expect,
        Out::Fresh(res),
    );
    let out = d.join("pred_task");
    let template = "predict --task semantic --dataset_folder @ --weights @ --out @ --cpu";
    let args = argv(template, &[&pastis, &w.join(MODEL), &out]);
    c.push(
        "PSE weights with --task semantic",
        "predict",
        args,
        expect,
        Out::Fresh(out),
    );
}

/// Checkpoints broken every way.
fn weight_cases(c: &mut Corpus) {
    c.pse_weights("npz truncated", "model.npz", WEIGHTS, (MODEL, "npz"), |w| {
        truncate(&w.join(MODEL), -300)
    });
    c.pse_weights("npz garbled", "model.npz", WEIGHTS, (MODEL, "npz"), |w| {
        std::fs::write(w.join(MODEL), b"PK\x03\x04 no archive follows").unwrap()
    });
    c.pse_weights(
        "npz Inf weight",
        "model.npz",
        WEIGHTS,
        (MODEL, "non-finite value inf"),
        |w| {
            let mut sd = read_npz(w.join(MODEL)).unwrap();
            let key = sd.keys().last().unwrap().to_string();
            if let Values::F32(v) = &mut sd.get_mut(&key).unwrap().values {
                v[0] = f32::INFINITY;
            }
            write_npz(w.join(MODEL), &sd).unwrap();
        },
    );
    let utae = c.fixtures.join("utae_small/weights.npz");
    c.pse_weights(
        "U-TAE weights for PSE + L-TAE",
        "model.npz",
        WEIGHTS,
        (MODEL, "another model"),
        |w| {
            std::fs::copy(&utae, w.join(MODEL)).unwrap();
        },
    );
    let pth = "Fold_1/model.pth.tar";
    c.pse_weights(
        "pth.tar truncated",
        "model.pth.tar",
        WEIGHTS,
        (pth, "truncated"),
        |w| {
            let sd = read_npz(w.join(MODEL)).unwrap();
            std::fs::remove_file(w.join(MODEL)).unwrap();
            write_torch_checkpoint(w.join(pth), &sd, Some(3)).unwrap();
            truncate(&w.join(pth), -3000);
        },
    );
    let three = &["evaluate", "predict", "convert-weights"];
    c.pse_weights(
        "conf.json broken",
        "model.npz",
        three,
        ("conf.json", "invalid JSON"),
        |w| truncate(&w.join("conf.json"), 40),
    );
    c.pse_weights(
        "conf.json 12 classes",
        "model.npz",
        three,
        (MODEL, "shape"),
        |w| {
            edit_json(&w.join("conf.json"), |v| {
                v["mlp4"] = json!([128, 64, 32, 12]);
                v["num_classes"] = json!(12);
            })
        },
    );
}

#[test]
fn pixelset_bad_inputs() {
    let Some(fx) = fixtures() else {
        return;
    };
    let tmp = TmpDir::new("bad_inputs", "pixelset");
    let mut c = Corpus::new(&tmp.0, &fx, "pse_ltae_small");
    parcel_cases(&mut c);
    meta_cases(&mut c);
    split_cases(&mut c);
    weight_cases(&mut c);
    run_all("pixel-set", &c.cases);
}
