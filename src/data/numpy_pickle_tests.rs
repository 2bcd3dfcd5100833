//! Tests of [`super`]: pickles written by numpy 2.4.6 (each hex string is `pickle.dumps(obj, protocol=p).hex()`
//! of the Python expression in its comment), the fixture's `S2-2017-T31TFM-meanstd.pkl`, and the writer, byte
//! for byte against numpy's own pickles.

use std::path::{Path, PathBuf};

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode(hex: &str) -> std::result::Result<NdArray, String> {
    let (v, _) = pickle::load(&unhex(hex)).unwrap();
    array_from_value(&v)
}

fn decode_seq(hex: &str) -> Vec<NdArray> {
    let (v, _) = pickle::load(&unhex(hex)).unwrap();
    v.as_seq()
        .unwrap()
        .iter()
        .map(|x| array_from_value(x).unwrap())
        .collect()
}

fn arr(shape: &[usize], data: &[f64]) -> NdArray {
    NdArray {
        shape: shape.to_vec(),
        data: data.to_vec(),
    }
}

struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(tag: &str) -> TmpDir {
    let d = std::env::temp_dir().join(format!("sitsgpu_npkl_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

/// np.asfortranarray(np.array([[1.5, -2.0, 3.0], [4.0, 5.25, -6.0]], dtype='>f4')), protocol 2: big-endian,
/// is_fortran True, the data in column order, bytes through `_codecs.encode(…, 'latin1')`.
const FORTRAN_F4_BE: &str = "8002636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e317105867106527107877108527109284b014b024b0386710a636e756d70790a64747970650a710b58020000006634710c898887710d52710e284b0358010000003e710f4e4e4e4affffffff4affffffff4b0074711062886803581e0000003fc380000040c2800000c38000000040c2a8000040400000c380c380000071116805867112527113747114622e";

/// (np.array([-3, 300, -32768], dtype='<i2'), np.array([0, 255], dtype='u1'),
///  np.array([[-70000], [5]], dtype='<i4')), protocol 2.
const INT_TUPLE: &str = "8002636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e317105867106527107877108527109284b014b0385710a636e756d70790a64747970650a710b58020000006932710c898887710d52710e284b0358010000003c710f4e4e4e4affffffff4affffffff4b00747110628968035809000000c3bdc3bf2c0100c2807111680586711252711374711462680068014b008571156807877116527117284b014b02857118680b580200000075317119898887711a52711b284b0358010000007c711c4e4e4e4affffffff4affffffff4b0074711d62896803580300000000c3bf711e680586711f52712074712162680068014b008571226807877123527124284b014b024b01867125680b5802000000693471268988877127527128284b03680f4e4e4e4affffffff4affffffff4b0074712962896803580c000000c290c3aec3bec3bf05000000712a680586712b52712c74712d6287712e2e";

/// [np.array(2.5), np.float64(3.5), np.int16(-7)], protocol 2: a 0-d array and two numpy scalars.
const ZERO_D_AND_SCALARS: &str = "80025d710028636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7101636e756d70790a6e6461727261790a71024b00857103635f636f646563730a656e636f64650a7104580100000062710558060000006c6174696e31710686710752710887710952710a284b0129636e756d70790a64747970650a710b58020000006638710c898887710d52710e284b0358010000003c710f4e4e4e4affffffff4affffffff4b0074711062896804580800000000000000000004407111680686711252711374711462636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7115680e680458080000000000000000000c407116680686711752711886711952711a6815680b58020000006932711b898887711c52711d284b03680f4e4e4e4affffffff4affffffff4b0074711e6268045804000000c3b9c3bf711f6806867120527121867122527123652e";

/// np.array([1+2j]), protocol 2: dtype c16, unsupported.
const COMPLEX: &str = "8002636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b00857102635f636f646563730a656e636f64650a7103580100000062710458060000006c6174696e317105867106527107877108527109284b014b0185710a636e756d70790a64747970650a710b5803000000633136710c898887710d52710e284b0358010000003c710f4e4e4e4affffffff4affffffff4b00747110628968035811000000000000000000c3b03f000000000000004071116805867112527113747114622e";

/// ((1.0, 2.0), [[0.5], [0.25]], 3), protocol 2: plain Python numbers.
const PLAIN_PYTHON: &str = "8002473ff00000000000004740000000000000008671005d7101285d7102473fe0000000000000615d7103473fd000000000000061654b038771042e";

/// (np.array([[1.5, -2.0], [3.25, 4.0]]), np.array([0.5, 2.0])), protocol 3.
const WRITER_F64_TUPLE: &str = "8003636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b008571024301627103877104527105284b014b024b02867106636e756d70790a64747970650a7107580200000066387108898887710952710a284b0358010000003c710b4e4e4e4affffffff4affffffff4b0074710c62894320000000000000f83f00000000000000c00000000000000a400000000000001040710d74710e62680068014b0085710f6803877110527111284b014b02857112680a894310000000000000e03f00000000000000407113747114628671152e";

/// (np.array([[1.5, -2.0], [3.25, 4.0]]), np.arange(3, dtype=np.int64), np.array(7.0)), protocol 3.
const WRITER_MIXED_TUPLE: &str = "8003636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b008571024301627103877104527105284b014b024b02867106636e756d70790a64747970650a7107580200000066387108898887710952710a284b0358010000003c710b4e4e4e4affffffff4affffffff4b0074710c62894320000000000000f83f00000000000000c00000000000000a400000000000001040710d74710e62680068014b0085710f6803877110527111284b014b0385711268075802000000693871138988877114527115284b03680b4e4e4e4affffffff4affffffff4b0074711662894318000000000000000001000000000000000200000000000000711774711862680068014b00857119680387711a52711b284b0129680a8943080000000000001c40711c74711d6287711e2e";

/// np.arange(6, dtype=np.int64).reshape(2, 3), protocol 3 (utae-paps' conf_mat.pkl layout).
const WRITER_I64: &str = "8003636e756d70792e5f636f72652e6d756c746961727261790a5f7265636f6e7374727563740a7100636e756d70790a6e6461727261790a71014b008571024301627103877104527105284b014b024b03867106636e756d70790a64747970650a7107580200000069387108898887710952710a284b0358010000003c710b4e4e4e4affffffff4affffffff4b0074710c62894330000000000000000001000000000000000200000000000000030000000000000004000000000000000500000000000000710d74710e622e";

/// numpy's bytes with numpy 1's module path, which the writer uses.
fn numpy1_path(hex: &str) -> Vec<u8> {
    let b = unhex(hex);
    let (from, to) = (
        b"numpy._core.multiarray".as_slice(),
        b"numpy.core.multiarray".as_slice(),
    );
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn fortran_big_endian_float32() {
    let a = decode(FORTRAN_F4_BE).unwrap();
    assert_eq!(a, arr(&[2, 3], &[1.5, -2.0, 3.0, 4.0, 5.25, -6.0]));
}

#[test]
fn integer_dtypes_in_a_tuple() {
    let v = decode_seq(INT_TUPLE);
    assert_eq!(v[0], arr(&[3], &[-3.0, 300.0, -32768.0]));
    assert_eq!(v[1], arr(&[2], &[0.0, 255.0]));
    assert_eq!(v[2], arr(&[2, 1], &[-70000.0, 5.0]));
}

#[test]
fn zero_d_arrays_scalars_and_plain_numbers() {
    let v = decode_seq(ZERO_D_AND_SCALARS);
    assert_eq!(
        v,
        vec![arr(&[], &[2.5]), arr(&[], &[3.5]), arr(&[], &[-7.0])]
    );
    let v = decode_seq(PLAIN_PYTHON);
    assert_eq!(
        v,
        vec![
            arr(&[2], &[1.0, 2.0]),
            arr(&[2, 1], &[0.5, 0.25]),
            arr(&[], &[3.0])
        ]
    );
}

#[test]
fn unsupported_and_malformed_values_are_explained() {
    let e = decode(COMPLEX).unwrap_err();
    assert!(e.contains("unsupported dtype \"c16\""), "{e}");
    // [[1.0], [2.0, 3.0]]: not rectangular.
    let ragged = Value::List(vec![
        Value::List(vec![Value::Float(1.0)]),
        Value::List(vec![Value::Float(2.0), Value::Float(3.0)]),
    ]);
    let e = array_from_value(&ragged).unwrap_err();
    assert!(e.contains("rectangular"), "{e}");
    let e = array_from_value(&Value::Str("x".into())).unwrap_err();
    assert!(e.contains("str"), "{e}");
    // A file: the error names it and the item.
    let dir = tmp("bad");
    let p = dir.0.join("bad.pkl");
    std::fs::write(&p, unhex(COMPLEX)).unwrap();
    let e = read_arrays(&p).unwrap_err().to_string();
    assert!(e.contains("bad.pkl") && e.contains("c16"), "{e}");
    std::fs::write(&p, b"\x80\x02K").unwrap();
    let e = read_arrays(&p).unwrap_err().to_string();
    assert!(e.contains("bad.pkl") && e.contains("truncated"), "{e}");
    let e = read_arrays(dir.0.join("missing.pkl"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.pkl"), "{e}");
}

#[test]
fn writer_matches_numpy_byte_for_byte() {
    let m = [1.5, -2.0, 3.25, 4.0];
    let s = [0.5, 2.0];
    let f = tuple_bytes(&[NumpyArray::f64(&[2, 2], &m), NumpyArray::f64(&[2], &s)]);
    assert_eq!(f, numpy1_path(WRITER_F64_TUPLE));
    let ints = [0i64, 1, 2];
    let mixed = tuple_bytes(&[
        NumpyArray::f64(&[2, 2], &m),
        NumpyArray::i64(&[3], &ints),
        NumpyArray::f64(&[], &[7.0]),
    ]);
    assert_eq!(mixed, numpy1_path(WRITER_MIXED_TUPLE));
    let six: Vec<i64> = (0..6).collect();
    assert_eq!(
        array_bytes(&NumpyArray::i64(&[2, 3], &six)),
        numpy1_path(WRITER_I64)
    );
}

#[test]
fn written_files_read_back() {
    // Checked by hand once with numpy 2.4.6: pickle.load(open(p, 'rb')) of this file gives
    // (array([[1.5, -2.], [3.25, 4.]]), array([0.5, 2.])) with dtype float64, without warnings.
    let dir = tmp("rt");
    let p = dir.0.join("meanstd.pkl");
    let m = [1.5, -2.0, 3.25, 4.0];
    let s = [0.5, 2.0];
    write_f64_tuple(&p, &[(&[2, 2], &m), (&[2], &s)]).unwrap();
    assert_eq!(
        read_arrays(&p).unwrap(),
        vec![arr(&[2, 2], &m), arr(&[2], &s)]
    );
    // One array (not in a tuple), int64, through the torch_writer entry point that conf_mat.pkl uses.
    let q = dir.0.join("conf_mat.pkl");
    let counts: Vec<i64> = vec![5, -1, 1 << 40, 0];
    crate::data::torch_writer::write_numpy_pickle_i64(&q, &[2, 2], &counts).unwrap();
    let back = read_arrays(&q).unwrap();
    assert_eq!(
        back,
        vec![arr(&[2, 2], &[5.0, -1.0, (1u64 << 40) as f64, 0.0])]
    );
    // Large arrays use BINBYTES (more than 255 data bytes) and still read back.
    let big: Vec<f64> = (0..1000).map(|i| i as f64 / 7.0).collect();
    write_array(&p, &NumpyArray::f64(&[10, 100], &big)).unwrap();
    assert_eq!(read_arrays(&p).unwrap(), vec![arr(&[10, 100], &big)]);
}

#[test]
fn reads_the_fixture_meanstd_pickle() {
    let folder =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/datasets/s2agri_tiny");
    if !folder.exists() {
        eprintln!("SKIPPED: no fixtures");
        return;
    }
    let v = read_arrays(folder.join("S2-2017-T31TFM-meanstd.pkl")).unwrap();
    let text = std::fs::read_to_string(folder.join("meanstd.json")).unwrap();
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v.len(), 2);
    for (a, key) in v.iter().zip(["mean", "std"]) {
        assert_eq!(a.shape, vec![24, 10], "{key}");
        let want: Vec<f64> = j[key]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect();
        // The json holds the shortest repr of each float64: equal bit for bit.
        assert_eq!(a.data, want, "{key}");
    }
}

#[test]
fn fortran_to_c_by_hand() {
    // A (2, 3, 2) array a[i, j, k] = 100 i + 10 j + k stored column-major: i fastest, then j, then k.
    let shape = [2, 3, 2];
    let mut f = Vec::new();
    for k in 0..2 {
        for j in 0..3 {
            for i in 0..2 {
                f.push((100 * i + 10 * j + k) as f64);
            }
        }
    }
    let c = fortran_to_c(&shape, &f);
    let want: Vec<f64> = (0..2)
        .flat_map(|i| (0..3).flat_map(move |j| (0..2).map(move |k| (100 * i + 10 * j + k) as f64)))
        .collect();
    assert_eq!(c, want);
}
