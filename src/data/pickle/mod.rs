//! A minimal, safe Python **pickle** reader: enough of the pickle virtual machine to read what `torch.save`
//! writes (protocol 2, the default of `torch.save`, and the opcodes of protocols 0–5 that carry plain data).
//!
//! Nothing is executed. A `GLOBAL` is kept as a name ([`Value::Global`]); calling it (`REDUCE`, `NEWOBJ`) builds
//! an opaque [`Value::Object`] that records the callable, its arguments and the state later given by `BUILD`.
//! Only a few constructors of plain data are evaluated: `collections.OrderedDict` and `dict` (→ [`Value::Dict`]),
//! `set`/`frozenset` (→ [`Value::Set`]) and `_codecs.encode(text, "latin1")` (protocol 2's spelling of `bytes`).
//! Persistent ids (`BINPERSID`, used by torch for tensor storages) become [`Value::PersistentId`]; the caller
//! interprets them (see [`crate::data::checkpoint`]).
//!
//! Memoised containers are shared, as in Python: a dict stored in the memo with `BINPUT` and filled afterwards by
//! `SETITEMS` is seen filled by a later `BINGET`. Internally every container lives in an arena and the stack
//! holds references; [`load`] converts the result into an owned tree of [`Value`]s (a cyclic pickle is an error).
//!
//! This file holds the value model ([`Value`], [`Object`]) and [`PickleError`]; the machine that reads the bytes,
//! [`load`], is in `vm.rs`.

use std::fmt;

mod vm;

pub use vm::load;

/// A Python value read from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in an i64.
    Int(i64),
    /// A larger integer: little-endian two's-complement bytes, as `LONG1`/`LONG4` store it.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` / `bytearray` (or a protocol-0 `str` that is not UTF-8).
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict (also `OrderedDict`), items in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A set or frozenset, in pickle order.
    Set(Vec<Value>),
    /// A global name (`module.name`): a class or function, never imported.
    Global {
        /// Module, e.g. `torch._utils`.
        module: String,
        /// Name inside the module, e.g. `_rebuild_tensor_v2`.
        name: String,
    },
    /// The result of calling something (`REDUCE`, `NEWOBJ`) the reader does not evaluate.
    Object(Box<Object>),
    /// A persistent id (`BINPERSID`/`PERSID`): what the pickler's `persistent_id` returned.
    PersistentId(Box<Value>),
}

/// An opaque object: `callable(*args)`, then `BUILD` with `state`, then `APPEND(S)`/`SETITEM(S)` on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// What was called (usually a [`Value::Global`]).
    pub callable: Value,
    /// The argument tuple (for `NEWOBJ_EX`, a tuple `(args, kwargs)`).
    pub args: Value,
    /// The state given by `BUILD`, if any.
    pub state: Option<Value>,
    /// Items added with `APPEND`/`APPENDS`.
    pub list_items: Vec<Value>,
    /// Items added with `SETITEM`/`SETITEMS`.
    pub dict_items: Vec<(Value, Value)>,
}

impl Value {
    /// A short name of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global { .. } => "global",
            Value::Object(_) => "object",
            Value::PersistentId(_) => "persistent id",
        }
    }

    /// For a dict, the value of the first item whose key is the string `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, if this is a `str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `int` that fits in an i64 (or a bool, as Python treats it).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The elements, if this is a tuple or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// `(module, name)` of a global, or of the callable of an object built from a global.
    pub fn global_name(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global { module, name } => Some((module, name)),
            Value::Object(o) => o.callable.global_name(),
            _ => None,
        }
    }
}

/// Why a pickle could not be read: the byte offset (from the start of the pickle) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    /// Offset of the opcode that failed.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for PickleError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_all(bytes: &[u8]) -> Value {
        let (v, n) = load(bytes).unwrap();
        assert_eq!(n, bytes.len());
        v
    }

    #[test]
    fn scalars_and_containers() {
        // pickle.dumps({'a': [1, -2, 300, 70000, True, None], 'b': (1.5,), 'c': 2**70}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffM,\x01Jp\x11\x01\x00\x88Ne\
X\x01\x00\x00\x00bq\x03G?\xf8\x00\x00\x00\x00\x00\x00\x85q\x04X\x01\x00\x00\x00cq\x05\x8a\x09\x00\x00\x00\x00\
\x00\x00\x00\x00@u.";
        let v = load_all(bytes);
        assert_eq!(
            v.get("a"),
            Some(&Value::List(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Int(300),
                Value::Int(70000),
                Value::Bool(true),
                Value::None
            ]))
        );
        assert_eq!(v.get("b"), Some(&Value::Tuple(vec![Value::Float(1.5)])));
        assert_eq!(
            v.get("c"),
            Some(&Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 0x40]))
        );
    }

    #[test]
    fn memoised_dict_filled_after_put_is_shared() {
        // x = {}; pickle.dumps([x, x]) after x was filled: EMPTY_DICT BINPUT then SETITEM, then BINGET.
        let bytes = b"\x80\x02]q\x00(}q\x01X\x01\x00\x00\x00kq\x02K\x07sh\x01e.";
        let v = load_all(bytes);
        let d = Value::Dict(vec![(Value::Str("k".into()), Value::Int(7))]);
        assert_eq!(v, Value::List(vec![d.clone(), d]));
    }

    #[test]
    fn unknown_globals_are_opaque_objects() {
        // GLOBAL 'm n', (1,), REDUCE, {'s': 2}, BUILD
        let bytes = b"\x80\x02cm\nn\nK\x01\x85R}X\x01\x00\x00\x00sK\x02sb.";
        let v = load_all(bytes);
        let Value::Object(o) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(v.global_name(), Some(("m", "n")));
        assert_eq!(o.args, Value::Tuple(vec![Value::Int(1)]));
        assert_eq!(
            o.state,
            Some(Value::Dict(vec![(Value::Str("s".into()), Value::Int(2))]))
        );
    }

    #[test]
    fn errors_give_offset_and_reason() {
        let e = load(b"\x80\x02K\x01\xff").unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(
            e.message
                .contains("unknown or unsupported pickle opcode 0xff"),
            "{e}"
        );
        let e = load(b"\x80\x02X\x10\x00\x00\x00ab").unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        let e = load(b"\x80\x02K\x01").unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        let e = load(b"\x80\x02h\x05.").unwrap_err();
        assert!(e.message.contains("memo key 5"), "{e}");
        // A list containing itself.
        let e = load(b"\x80\x02]q\x00h\x00a.").unwrap_err();
        assert!(e.message.contains("cyclic"), "{e}");
    }
}
