//! A tiny pickle writer: the opcodes `torch.save` and `pickle.dump` of numpy arrays need, byte for byte as
//! CPython's pickler emits them (every memoisable object gets a `BINPUT`; a global, a [`Py::Const`] string or a
//! [`Py::Shared`] object written again becomes a `BINGET`).
//!
//! Callers build a [`Py`] tree and call [`pickle`]; [`atomic_write`] puts the bytes in place. Used by
//! [`crate::data::torch_writer`] (checkpoints) and [`crate::data::numpy_pickle`] (numpy arrays).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::engine::error::{Error, Result};

/// The Python values a checkpoint or a pickled numpy array is made of.
pub(crate) enum Py {
    None,
    Bool(bool),
    Int(i64),
    /// Little-endian two's-complement bytes (trimmed when written).
    BigInt(Vec<u8>),
    /// A fresh `str` object.
    Str(String),
    /// A `str` constant that torch passes as one object every time (`'storage'`, `'cpu'`): memo hits after the
    /// first.
    Const(&'static str),
    Tuple(Vec<Py>),
    List(Vec<Py>),
    Dict(Vec<(Py, Py)>),
    /// `collections.OrderedDict`: its `__reduce__` is `(OrderedDict, (), None, None, iter(items))`.
    OrderedDict(Vec<(Py, Py)>),
    /// A class or function, pickled by name (memo hits after the first).
    Global(&'static str, &'static str),
    /// `module.name(*args)`.
    Reduce(&'static str, &'static str, Vec<Py>),
    /// What the pickler's `persistent_id` returned for an object.
    PersistentId(Box<Py>),
    /// A `bytes` object (protocol 3 and later).
    Bytes(Vec<u8>),
    /// `obj.__setstate__(state)`: the object, then its state, then BUILD.
    Build(Box<Py>, Box<Py>),
    /// One Python object used in several places (numpy's `dtype('float64')` singleton, the `b'b'` constant of
    /// `ndarray.__reduce__`): written in full the first time, a memo hit of the same key afterwards.
    Shared(String, Box<Py>),
}

impl Py {
    /// A fresh `str`.
    pub(crate) fn str(s: &str) -> Py {
        Py::Str(s.to_string())
    }
}

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BINUNICODE: u8 = b'X';
const GLOBAL: u8 = b'c';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const EMPTY_DICT: u8 = b'}';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';
const EMPTY_LIST: u8 = b']';
const APPEND: u8 = b'a';
const APPENDS: u8 = b'e';
const REDUCE: u8 = b'R';
const BINPERSID: u8 = b'Q';
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const BINGET: u8 = b'h';
const BUILD: u8 = b'b';
const SHORT_BINBYTES: u8 = b'C';
const BINBYTES: u8 = b'B';
const LONG_BINGET: u8 = b'j';
/// Items per `SETITEMS` / `APPENDS` batch (CPython's `_BATCHSIZE`).
const BATCH: usize = 1000;

/// `pickle.dumps(value, protocol)` (2: what `torch.save` uses; 3: the first with a bytes opcode, numpy's
/// `pickle.dump` default in Python 3.0–3.7), byte for byte as CPython writes it: every memoisable object gets a
/// `BINPUT`, and a global, a [`Py::Const`] string or a [`Py::Shared`] object written again becomes a `BINGET`.
/// Only opcodes of protocol 2 are used, plus `SHORT_BINBYTES`/`BINBYTES` for [`Py::Bytes`] (protocol ≥ 3).
pub(crate) fn pickle(value: &Py, protocol: u8) -> Vec<u8> {
    let mut p = Pickler {
        out: vec![PROTO, protocol],
        next_memo: 0,
        shared: HashMap::new(),
    };
    p.save(value);
    p.out.push(STOP);
    p.out
}

struct Pickler {
    out: Vec<u8>,
    next_memo: u32,
    /// Memo index of each global (`"module\nname"`), constant string and shared object already written.
    shared: HashMap<String, u32>,
}

impl Pickler {
    /// Writes `v`; returns the memo index of the object written, if it was memoised.
    fn save(&mut self, v: &Py) -> Option<u32> {
        match v {
            Py::None => self.out.push(NONE),
            Py::Bool(b) => self.out.push(if *b { NEWTRUE } else { NEWFALSE }),
            Py::Int(i) => self.int(*i),
            Py::BigInt(le) => self.long1(le),
            Py::Str(s) => {
                self.unicode(s);
                return Some(self.put());
            }
            Py::Const(s) => {
                return Some(self.shared(format!("'{s}'"), |p| {
                    p.unicode(s);
                    p.put()
                }))
            }
            Py::Global(module, name) => {
                return Some(self.shared(format!("{module}\n{name}"), |p| {
                    p.out.push(GLOBAL);
                    p.out.extend(format!("{module}\n{name}\n").as_bytes());
                    p.put()
                }))
            }
            Py::Shared(key, inner) => {
                return Some(self.shared(format!("shared {key}"), |p| {
                    p.save(inner)
                        .expect("pickle_writer: a Py::Shared object must be memoisable")
                }))
            }
            Py::Tuple(items) => return self.tuple(items),
            Py::List(items) => {
                self.out.push(EMPTY_LIST);
                let i = self.put();
                self.batched(items.len(), APPEND, APPENDS, |p, k| {
                    p.save(&items[k]);
                });
                return Some(i);
            }
            Py::Dict(items) => {
                self.out.push(EMPTY_DICT);
                let i = self.put();
                self.setitems(items);
                return Some(i);
            }
            Py::OrderedDict(items) => {
                self.save(&Py::Global("collections", "OrderedDict"));
                self.out.extend([EMPTY_TUPLE, REDUCE]);
                let i = self.put();
                self.setitems(items);
                return Some(i);
            }
            Py::Reduce(module, name, args) => {
                self.save(&Py::Global(module, name));
                self.tuple(args);
                self.out.push(REDUCE);
                return Some(self.put());
            }
            Py::PersistentId(pid) => {
                self.save(pid);
                self.out.push(BINPERSID);
            }
            Py::Bytes(b) => {
                match u8::try_from(b.len()) {
                    Ok(n) => self.out.extend([SHORT_BINBYTES, n]),
                    Err(_) => {
                        self.out.push(BINBYTES);
                        self.out.extend((b.len() as u32).to_le_bytes());
                    }
                }
                self.out.extend(b);
                return Some(self.put());
            }
            Py::Build(obj, state) => {
                let i = self.save(obj);
                self.save(state);
                self.out.push(BUILD);
                return i;
            }
        }
        None
    }

    /// Memoises the object just written.
    fn put(&mut self) -> u32 {
        let i = self.next_memo;
        match u8::try_from(i) {
            Ok(b) => self.out.extend([BINPUT, b]),
            Err(_) => {
                self.out.push(LONG_BINPUT);
                self.out.extend(i.to_le_bytes());
            }
        }
        self.next_memo += 1;
        i
    }

    /// Writes an object once (`write` returns its memo index); later calls with the same `id` fetch it from the
    /// memo. Returns the memo index.
    fn shared(&mut self, id: String, write: impl FnOnce(&mut Self) -> u32) -> u32 {
        if let Some(&i) = self.shared.get(&id) {
            match u8::try_from(i) {
                Ok(b) => self.out.extend([BINGET, b]),
                Err(_) => {
                    self.out.push(LONG_BINGET);
                    self.out.extend(i.to_le_bytes());
                }
            }
            i
        } else {
            let i = write(self);
            self.shared.insert(id, i);
            i
        }
    }

    fn int(&mut self, v: i64) {
        if let Ok(b) = u8::try_from(v) {
            self.out.extend([BININT1, b]);
        } else if let Ok(h) = u16::try_from(v) {
            self.out.push(BININT2);
            self.out.extend(h.to_le_bytes());
        } else if let Ok(w) = i32::try_from(v) {
            self.out.push(BININT);
            self.out.extend(w.to_le_bytes());
        } else {
            self.long1(&v.to_le_bytes());
        }
    }

    /// `LONG1` of a little-endian two's-complement integer, trimmed to the fewest bytes that keep its sign.
    fn long1(&mut self, le: &[u8]) {
        let mut n = le.len();
        while n > 1 {
            let (top, below) = (le[n - 1], le[n - 2]);
            if (top == 0 && below < 0x80) || (top == 0xff && below >= 0x80) {
                n -= 1;
            } else {
                break;
            }
        }
        self.out.extend([LONG1, n as u8]);
        self.out.extend(&le[..n]);
    }

    fn unicode(&mut self, s: &str) {
        self.out.push(BINUNICODE);
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
    }

    /// `()` is `EMPTY_TUPLE` (not memoised); up to 3 items `TUPLE1..3`; more `MARK … TUPLE`.
    fn tuple(&mut self, items: &[Py]) -> Option<u32> {
        if items.is_empty() {
            self.out.push(EMPTY_TUPLE);
            return None;
        }
        let mark = items.len() > 3;
        if mark {
            self.out.push(MARK);
        }
        for v in items {
            self.save(v);
        }
        self.out.push(if mark {
            TUPLE
        } else {
            TUPLE1 + (items.len() as u8 - 1)
        });
        Some(self.put())
    }

    fn setitems(&mut self, items: &[(Py, Py)]) {
        self.batched(items.len(), SETITEM, SETITEMS, |p, i| {
            p.save(&items[i].0);
            p.save(&items[i].1);
        });
    }

    /// Items `0..n` in batches of [`BATCH`], as CPython's `_batch_setitems` / `_batch_appends`: a batch of more
    /// than one item is `MARK items many`, a lone item `item single`.
    fn batched(&mut self, n: usize, single: u8, many: u8, mut item: impl FnMut(&mut Self, usize)) {
        for start in (0..n).step_by(BATCH) {
            let end = (start + BATCH).min(n);
            if end - start > 1 {
                self.out.push(MARK);
            }
            (start..end).for_each(|i| item(self, i));
            self.out.push(if end - start > 1 { many } else { single });
        }
    }
}

/// Writes a file through `write` into `<path>.tmp`, then renames it into place; errors name the file.
pub(crate) fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::result::Result<(), String>,
) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        w.flush().map_err(|e| e.to_string())?;
        w.get_ref().sync_all().map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_trims_to_the_fewest_bytes() {
        let enc = |v: i64| {
            let mut p = Pickler {
                out: Vec::new(),
                next_memo: 0,
                shared: HashMap::new(),
            };
            p.int(v);
            p.out
        };
        assert_eq!(enc(255), vec![BININT1, 255]);
        assert_eq!(enc(65535), vec![BININT2, 255, 255]);
        assert_eq!(enc(-1), vec![BININT, 255, 255, 255, 255]);
        assert_eq!(enc(1 << 31), vec![LONG1, 5, 0, 0, 0, 0x80, 0]);
        assert_eq!(
            enc(-(1 << 31) - 1),
            vec![LONG1, 5, 0xff, 0xff, 0xff, 0x7f, 0xff]
        );
        assert_eq!(enc(-(1 << 40)), vec![LONG1, 6, 0, 0, 0, 0, 0, 0xff]);
    }
}
