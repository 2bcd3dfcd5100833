//! Writing PyTorch checkpoints in the official format, so that `torch.load` (and the original training and test
//! scripts, which read `torch.load(path)["state_dict"]`) open what sitsgpu exports.
//!
//! Both serialisations of `torch.save({"epoch": epoch, "state_dict": state_dict})` are written, with the exact
//! bytes CPython's pickler emits for real tensors (protocol 2, the memo `BINPUT`s, `BINGET` for a repeated global
//! or the repeated `'storage'` / `'cpu'` strings):
//! * [`write_torch_checkpoint`]: the zip format of torch ≥ 1.6 — records `archive/data.pkl` (the pickle),
//!   `archive/byteorder` (`little`), `archive/data/<key>` (each storage's raw little-endian bytes, keys `0`, `1`, …
//!   written in sorted order), `archive/version` (`3\n`); stored uncompressed, each record's data aligned to 64
//!   bytes as torch's writer does.
//! * [`write_torch_checkpoint_legacy`]: the format of torch ≤ 1.5 — pickles of the magic number, the protocol
//!   version 1001, the sys_info dict, the object and the sorted list of storage keys, then each storage as an
//!   8-byte little-endian element count followed by its raw bytes.
//!
//! Every tensor gets its own storage (offset 0, contiguous row-major strides): a float entry is a
//! `torch.FloatStorage`, an integer entry (`num_batches_tracked`) a `torch.LongStorage`. A tensor is
//! `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` and the state dict a
//! `collections.OrderedDict`, which `torch.load(weights_only=True)` accepts. The state dict's `_metadata`
//! attribute (module versions) is not written: torch treats its absence as "current version", and every key,
//! `num_batches_tracked` included, is present. `tests/data/make_torch_checkpoints.py` makes `writer_*.pth.tar`
//! with Python's own pickler for the byte-for-byte tests.
//!
//! Files are written atomically: into `<path>.tmp`, then renamed into place.

use std::io::Write;
use std::path::Path;

use crate::data::numpy_pickle::{self, NumpyArray};
use crate::data::pickle_writer::{atomic_write, pickle, Py};
use crate::data::state_dict::{Entry, StateDict, Values};
use crate::engine::error::Result;

/// Writes `sd` (and `epoch`, when given) as `torch.save` ≥ 1.6 does: the zip format (see the module doc).
/// Errors name the file.
pub fn write_torch_checkpoint(
    path: impl AsRef<Path>,
    sd: &StateDict,
    epoch: Option<i64>,
) -> Result<()> {
    let data_pkl = pickle(&checkpoint_object(sd, epoch, PidStyle::Zip), 2);
    let entries: Vec<&Entry> = sd.iter().map(|(_, e)| e).collect();
    atomic_write(path.as_ref(), |f| {
        let mut zip = zip::ZipWriter::new(f);
        let mut record = |name: &str, bytes: &[u8]| -> std::result::Result<(), String> {
            let options = zip::write::FileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(bytes.len() as u64 >= u32::MAX as u64 / 2);
            zip.start_file_aligned(format!("archive/{name}"), options, 64)
                .map_err(|e| e.to_string())?;
            zip.write_all(bytes).map_err(|e| e.to_string())
        };
        record("data.pkl", &data_pkl)?;
        record("byteorder", b"little")?;
        for i in sorted_keys(entries.len()) {
            record(&format!("data/{i}"), &raw_bytes(entries[i]))?;
        }
        record("version", b"3\n")?;
        zip.finish().map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Writes `sd` (and `epoch`, when given) as `torch.save` ≤ 1.5 does (or `_use_new_zipfile_serialization=False`):
/// the legacy format (see the module doc). Errors name the file.
pub fn write_torch_checkpoint_legacy(
    path: impl AsRef<Path>,
    sd: &StateDict,
    epoch: Option<i64>,
) -> Result<()> {
    let entries: Vec<&Entry> = sd.iter().map(|(_, e)| e).collect();
    let keys = sorted_keys(entries.len());
    // sys_info: the sizes of C short, int and long on 64-bit Linux and macOS.
    let sys_info = Py::Dict(vec![
        (
            Py::str("protocol_version"),
            Py::Int(LEGACY_PROTOCOL_VERSION),
        ),
        (Py::str("little_endian"), Py::Bool(true)),
        (
            Py::str("type_sizes"),
            Py::Dict(vec![
                (Py::str("short"), Py::Int(2)),
                (Py::str("int"), Py::Int(4)),
                (Py::str("long"), Py::Int(8)),
            ]),
        ),
    ]);
    let key_list = Py::List(keys.iter().map(|k| Py::Str(k.to_string())).collect());
    let mut out = Vec::new();
    for object in [
        Py::BigInt(MAGIC_NUMBER.to_le_bytes().to_vec()),
        Py::Int(LEGACY_PROTOCOL_VERSION),
        sys_info,
        checkpoint_object(sd, epoch, PidStyle::Legacy),
        key_list,
    ] {
        out.extend(pickle(&object, 2));
    }
    for i in keys {
        out.extend((entries[i].numel() as u64).to_le_bytes());
        out.extend(raw_bytes(entries[i]));
    }
    atomic_write(path.as_ref(), |f| {
        f.write_all(&out).map_err(|e| e.to_string())
    })
}

/// The legacy format's first pickle.
const MAGIC_NUMBER: u128 = 0x1950a86a20f9469cfc6c;
/// The legacy format's protocol version.
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

/// Storage indices `0..n` in the order of their keys sorted as strings (`"0", "1", "10", "100", "11", …`), as
/// torch writes them.
fn sorted_keys(n: usize) -> Vec<usize> {
    let mut keys: Vec<usize> = (0..n).collect();
    keys.sort_by_key(|k| k.to_string());
    keys
}

/// The raw little-endian bytes of an entry's storage.
fn raw_bytes(e: &Entry) -> Vec<u8> {
    match &e.values {
        Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Contiguous row-major strides, as torch computes them (a zero dimension counts as 1).
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
}

/// The persistent id of a storage: 5 fields in the zip format, a 6th (`view_metadata`, None) in the legacy one.
#[derive(Clone, Copy, PartialEq)]
enum PidStyle {
    Zip,
    Legacy,
}

/// `{"epoch": epoch, "state_dict": OrderedDict(name → tensor)}` (no "epoch" when `None`); storage `i` is the
/// `i`-th entry's.
fn checkpoint_object(sd: &StateDict, epoch: Option<i64>, style: PidStyle) -> Py {
    let tensors = sd
        .iter()
        .enumerate()
        .map(|(i, (name, e))| (Py::str(name), tensor(i, e, style)))
        .collect();
    let mut top = Vec::new();
    if let Some(e) = epoch {
        top.push((Py::str("epoch"), Py::Int(e)));
    }
    top.push((Py::str("state_dict"), Py::OrderedDict(tensors)));
    Py::Dict(top)
}

/// `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` on storage `key`:
/// `('storage', torch.FloatStorage | torch.LongStorage, key, 'cpu', numel[, None])`.
fn tensor(key: usize, e: &Entry, style: PidStyle) -> Py {
    let storage = match e.values {
        Values::F32(_) => "FloatStorage",
        Values::I64(_) => "LongStorage",
    };
    let mut pid = vec![
        Py::Const("storage"),
        Py::Global("torch", storage),
        Py::Str(key.to_string()),
        Py::Const("cpu"),
        Py::Int(e.numel() as i64),
    ];
    if style == PidStyle::Legacy {
        pid.push(Py::None);
    }
    let dims = |v: &[usize]| Py::Tuple(v.iter().map(|&d| Py::Int(d as i64)).collect());
    Py::Reduce(
        "torch._utils",
        "_rebuild_tensor_v2",
        vec![
            Py::PersistentId(Box::new(Py::Tuple(pid))),
            Py::Int(0),
            dims(&e.shape),
            dims(&contiguous_strides(&e.shape)),
            Py::Bool(false),
            Py::OrderedDict(Vec::new()),
        ],
    )
}

/// Writes an int64 array as `pickle.dump(numpy_array, f)` does (protocol 3): what utae-paps saves as
/// `Fold_k/conf_mat.pkl`. Kept for its caller; the writer is [`crate::data::numpy_pickle::write_array`].
pub fn write_numpy_pickle_i64(path: impl AsRef<Path>, shape: &[usize], data: &[i64]) -> Result<()> {
    numpy_pickle::write_array(path, &NumpyArray::i64(shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::checkpoint::read_torch_checkpoint;
    use std::io::{Cursor, Read};
    use std::path::PathBuf;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sitsgpu_tw_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `writer_state_dict()` of tests/data/make_torch_checkpoints.py.
    fn writer_state_dict() -> StateDict {
        let shapes: [(&str, &[usize]); 12] = [
            ("conv.weight", &[2, 3, 1, 1]),
            ("conv.bias", &[2]),
            ("bn.weight", &[2]),
            ("bn.bias", &[2]),
            ("bn.running_mean", &[2]),
            ("bn.running_var", &[2]),
            ("bn.num_batches_tracked", &[]),
            ("empty", &[0, 3]),
            ("fc.weight", &[3, 2]),
            ("fc.bias", &[3]),
            ("big.counter", &[]),
            ("head.weight", &[1, 4]),
        ];
        let mut sd = StateDict::new();
        for (i, (name, shape)) in shapes.into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let e = match name {
                "bn.num_batches_tracked" => Entry::i64(vec![], vec![7]),
                "big.counter" => Entry::i64(vec![], vec![-(1i64 << 40) - 3]),
                _ => Entry::f32(
                    shape.to_vec(),
                    (0..n).map(|k| i as f32 - 1.5 + k as f32 / 8.0).collect(),
                ),
            };
            sd.insert(name, e);
        }
        sd
    }

    /// Every record of a zip archive: name → bytes.
    fn records(path: &Path) -> Vec<(String, Vec<u8>)> {
        let bytes = std::fs::read(path).unwrap();
        let mut z = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..z.len())
            .map(|i| {
                let mut f = z.by_index(i).unwrap();
                let mut b = Vec::new();
                f.read_to_end(&mut b).unwrap();
                (f.name().to_string(), b)
            })
            .collect()
    }

    #[test]
    fn strides_and_key_order_follow_torch() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[0, 3]), vec![3, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
        assert_eq!(sorted_keys(12), vec![0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn zip_checkpoint_matches_python_byte_for_byte() {
        let dir = tmp_dir("zip");
        for (reference, epoch) in [
            ("writer_zip.pth.tar", Some(5)),
            ("writer_noepoch_zip.pth.tar", None),
        ] {
            let out = dir.join(reference);
            write_torch_checkpoint(&out, &writer_state_dict(), epoch).unwrap();
            // Python's records, less torch 2's .data/serialization_id (a random id torch.load ignores).
            let want: Vec<_> = records(&data(reference))
                .into_iter()
                .filter(|(n, _)| !n.ends_with("serialization_id"))
                .collect();
            let got = records(&out);
            let names =
                |r: &[(String, Vec<u8>)]| r.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(names(&got), names(&want));
            for ((name, g), (_, w)) in got.iter().zip(&want) {
                assert_eq!(g, w, "record {name} of {reference}");
            }
            // The data of every record starts at a multiple of 64 bytes, as torch's writer aligns it.
            let bytes = std::fs::read(&out).unwrap();
            let mut z = zip::ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
            for i in 0..z.len() {
                let f = z.by_index_raw(i).unwrap();
                assert_eq!(f.data_start() % 64, 0, "{}", f.name());
            }
            let back = read_torch_checkpoint(&out).unwrap();
            assert_eq!(back.epoch, epoch);
            assert_eq!(back.state_dict, writer_state_dict());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn legacy_checkpoint_matches_python_byte_for_byte() {
        let dir = tmp_dir("legacy");
        let out = dir.join("legacy.pth.tar");
        write_torch_checkpoint_legacy(&out, &writer_state_dict(), Some(5)).unwrap();
        let got = std::fs::read(&out).unwrap();
        let want = std::fs::read(data("writer_legacy.pth.tar")).unwrap();
        assert_eq!(got.len(), want.len());
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "byte {i} differs: {:?} vs Python's {:?}",
                &got[i.saturating_sub(8)..(i + 8).min(got.len())],
                &want[i.saturating_sub(8)..(i + 8).min(want.len())]
            );
        }
        let back = read_torch_checkpoint(&out).unwrap();
        assert_eq!(back.epoch, Some(5));
        assert_eq!(back.state_dict, writer_state_dict());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The generator's files (views, shared storages, doubles, halves, int32) re-written by both writers read back
    /// as the same state dict and epoch.
    #[test]
    fn generator_checkpoints_round_trip_through_both_writers() {
        let dir = tmp_dir("rt");
        for src in [
            "ckpt_legacy.pth.tar",
            "ckpt_zip.pth.tar",
            "model_legacy.pth",
            "bare_zip.pth",
        ] {
            let original = read_torch_checkpoint(data(src)).unwrap();
            let z = dir.join(format!("z_{src}"));
            let l = dir.join(format!("l_{src}"));
            write_torch_checkpoint(&z, &original.state_dict, original.epoch).unwrap();
            write_torch_checkpoint_legacy(&l, &original.state_dict, original.epoch).unwrap();
            assert_eq!(read_torch_checkpoint(&z).unwrap(), original, "{src} (zip)");
            assert_eq!(
                read_torch_checkpoint(&l).unwrap(),
                original,
                "{src} (legacy)"
            );
        }
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn large_values_and_many_entries() {
        // More than one SETITEMS batch (1000 pairs) and more than 256 memo slots (LONG_BINPUT / LONG_BINGET).
        let mut sd = StateDict::new();
        for i in 0..1203 {
            sd.insert(
                format!("layer{i}.weight"),
                Entry::f32(vec![1], vec![i as f32]),
            );
        }
        sd.insert("n", Entry::i64(vec![2], vec![i64::MIN, i64::MAX]));
        let dir = tmp_dir("many");
        for legacy in [false, true] {
            let p = dir.join(format!("many_{legacy}.pth"));
            let epoch = Some(-(1i64 << 33));
            if legacy {
                write_torch_checkpoint_legacy(&p, &sd, epoch).unwrap();
            } else {
                write_torch_checkpoint(&p, &sd, epoch).unwrap();
            }
            let back = read_torch_checkpoint(&p).unwrap();
            assert_eq!(back.epoch, epoch);
            assert_eq!(back.state_dict, sd);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn numpy_pickle_reads_back_as_an_ndarray() {
        let dir = tmp_dir("numpy_pickle");
        let p = dir.join("conf_mat.pkl");
        let data: Vec<i64> = (0..6).collect();
        write_numpy_pickle_i64(&p, &[2, 3], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..2], &[0x80, 3]);
        let (v, used) = crate::data::pickle::load(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        // The reconstructed object carries the raw little-endian data in its state.
        let text = format!("{v:?}");
        assert!(
            text.contains("_reconstruct") && text.contains("ndarray"),
            "{text}"
        );
        let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(bytes.windows(raw.len()).any(|w| w == raw.as_slice()));
    }

    #[test]
    fn errors_name_the_file() {
        let p = std::env::temp_dir().join("sitsgpu_tw_no_such_dir/x/model.pth.tar");
        let e = write_torch_checkpoint(&p, &writer_state_dict(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sitsgpu_tw_no_such_dir/x/model.pth.tar"), "{e}");
    }
}
