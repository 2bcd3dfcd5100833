//! Tests of the checkpoint reader on the `tests/data/*.pth*` files that `tests/data/make_torch_checkpoints.py`
//! writes: zip and legacy files give the same state dict, bare and `"model"` state dicts, the optimizer part
//! parses into opaque values, and errors name the file and the problem.

use super::*;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn tmp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sitsgpu_ckpt_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The state dict `tests/data/make_torch_checkpoints.py` writes into the `ckpt_*` files.
fn expected_full() -> StateDict {
    let mut sd = StateDict::new();
    sd.insert(
        "conv.weight",
        Entry::f32(vec![2, 3], vec![0.5, -1.0, 2.25, 3.0, -4.5, 5.75]),
    );
    // The transpose: a (3, 2) view with stride (1, 3) of the same storage.
    sd.insert(
        "conv.weight_t",
        Entry::f32(vec![3, 2], vec![0.5, 3.0, -1.0, -4.5, 2.25, 5.75]),
    );
    // One storage [10, 11, 12, 13, 14] at offsets 1 and 3.
    sd.insert("lin.bias", Entry::f32(vec![2], vec![11.0, 12.0]));
    sd.insert("lin.weight", Entry::f32(vec![1, 2], vec![13.0, 14.0]));
    sd.insert("bn.num_batches_tracked", Entry::i64(vec![], vec![7]));
    // DoubleStorage [0.25, 1.5, -3.0, 1e-3] with stride 2.
    sd.insert("bn.running_var", Entry::f32(vec![2], vec![0.25, -3.0]));
    sd.insert("empty", Entry::f32(vec![0, 3], vec![]));
    sd
}

fn expected_misc() -> StateDict {
    let mut sd = StateDict::new();
    sd.insert("weight", Entry::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
    sd.insert(
        "half",
        Entry::f32(vec![4], vec![1.5, -2.0, 65504.0, 2f32.powi(-24)]),
    );
    // _rebuild_tensor_v3 with torch.int32 on an UntypedStorage of [9, -5, 100000], offset 1.
    sd.insert("ints", Entry::i64(vec![2], vec![-5, 100000]));
    sd
}

#[test]
fn zip_and_legacy_checkpoints_read_the_same() {
    let z = read_torch_checkpoint(data("ckpt_zip.pth.tar")).unwrap();
    let l = read_torch_checkpoint(data("ckpt_legacy.pth.tar")).unwrap();
    assert_eq!(z.epoch, Some(12));
    assert_eq!(z.state_dict, expected_full());
    assert_eq!(l, z);
}

#[test]
fn bare_and_model_key_state_dicts() {
    let b = read_torch_checkpoint(data("bare_zip.pth")).unwrap();
    assert_eq!(b.epoch, None);
    assert_eq!(b.state_dict, expected_misc());
    let m = read_torch_checkpoint(data("model_legacy.pth")).unwrap();
    assert_eq!(m, b);
}

#[test]
fn the_optimizer_part_parses_into_opaque_values() {
    let bytes = std::fs::read(data("ckpt_legacy.pth.tar")).unwrap();
    let (top, _) = legacy_format(&bytes).unwrap();
    let opt = top.get("optimizer").unwrap();
    let group = &opt.get("param_groups").unwrap().as_seq().unwrap()[0];
    assert_eq!(
        group.get("betas"),
        Some(&Value::Tuple(vec![Value::Float(0.9), Value::Float(0.999)]))
    );
    assert_eq!(group.get("foreach"), Some(&Value::None));
    let sched = opt.get("scheduler").unwrap();
    assert_eq!(
        sched.global_name(),
        Some(("sitsgpu_test.sched", "WarmupScheduler"))
    );
    let Value::Object(o) = sched else { panic!() };
    assert_eq!(
        o.state.as_ref().unwrap().get("last_epoch"),
        Some(&Value::Int(11))
    );
    assert!(matches!(opt.get("big"), Some(Value::BigInt(_))));
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tmp_dir("err");
    let err = |p: &Path| read_torch_checkpoint(p).unwrap_err().to_string();

    let e = err(&dir.join("missing.pth.tar"));
    assert!(e.contains("missing.pth.tar"), "{e}");

    for (src, cut, want) in [
        ("ckpt_zip.pth.tar", 2000, "truncated"),
        ("ckpt_legacy.pth.tar", 600, "truncated"),
        ("ckpt_legacy.pth.tar", 1744, "truncated: storage"),
    ] {
        let bytes = std::fs::read(data(src)).unwrap();
        let p = dir.join(format!("cut_{cut}_{src}"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = err(&p);
        assert!(
            e.contains(&format!("cut_{cut}_{src}")) && e.contains(want),
            "{e}"
        );
    }

    let p = dir.join("opcode.pth");
    std::fs::write(&p, b"\x80\x02\xfe.").unwrap();
    let e = err(&p);
    assert!(
        e.contains("opcode.pth") && e.contains("unknown or unsupported pickle opcode 0xfe"),
        "{e}"
    );

    let p = dir.join("text.pth");
    std::fs::write(&p, b"hello").unwrap();
    assert!(err(&p).contains("not a PyTorch checkpoint"));

    let e = err(&data("bad_view.pth"));
    assert!(
        e.contains("bad_view.pth")
            && e.contains("entry \"bad\"")
            && e.contains(
                "reaches element 5, but storage \"77\" (torch.FloatStorage) holds 5 elements"
            ),
        "{e}"
    );

    let e = err(&data("bad_global.pth"));
    assert!(
        e.contains("bad_global.pth")
            && e.contains("entry \"w\"")
            && e.contains("torch._utils._rebuild_sparse_tensor"),
        "{e}"
    );

    // The zip checkpoint without its storage record data/2.
    let src = std::fs::read(data("ckpt_zip.pth.tar")).unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(&src[..])).unwrap();
    let p = dir.join("nostorage.pth");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        for i in 0..archive.len() {
            let f = archive.by_index_raw(i).unwrap();
            if f.name() != "archive/data/2" {
                w.raw_copy_file(f).unwrap();
            }
        }
        w.finish().unwrap();
    }
    let e = err(&p);
    assert!(
        e.contains("nostorage.pth")
            && e.contains("storage key \"2\" not found")
            && e.contains("archive/data/2"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
