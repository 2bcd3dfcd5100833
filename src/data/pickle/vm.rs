//! The pickle virtual machine behind [`load`]: a cursor over the bytes, the stack with its marks, the memo, the
//! arena of shared containers (scalars sit on the stack inline, containers as arena indices), one `match` arm
//! per supported opcode, and the conversion of the result into an owned [`Value`] tree, bounded in depth and
//! size so that a cyclic or hostile pickle is an error rather than a hang.

use std::collections::HashMap;

use super::{Object, PickleError, Value};

/// Reads one pickle from the start of `data` (up to and including its `STOP`). Returns the value and the number
/// of bytes consumed, so that consecutive pickles (torch's legacy format) can be read one after the other.
pub fn load(data: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
    };
    let mut op_start = 0;
    let top = vm.run(&mut op_start).map_err(|message| PickleError {
        offset: op_start,
        message,
    })?;
    let mut budget = MAX_NODES;
    let value = vm
        .to_value(&top, 0, &mut budget)
        .map_err(|message| PickleError {
            offset: vm.pos,
            message,
        })?;
    Ok((value, vm.pos))
}

/// Deepest nesting converted to a [`Value`] (deeper means a cycle or a hostile file).
const MAX_DEPTH: usize = 200;
/// Most values produced by the conversion (shared references are copied; this bounds the blow-up).
const MAX_NODES: usize = 50_000_000;

/// A value on the VM stack: scalars inline, containers as arena indices (shared, mutable).
#[derive(Debug, Clone)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Global(String, String),
    Node(usize),
}

#[derive(Debug)]
enum Node {
    Tuple(Vec<Obj>),
    List(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
    Set(Vec<Obj>),
    Object {
        callable: Obj,
        args: Obj,
        state: Option<Obj>,
        list_items: Vec<Obj>,
        dict_items: Vec<(Obj, Obj)>,
    },
    PersId(Obj),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Obj>,
    marks: Vec<usize>,
    memo: HashMap<u32, Obj>,
    arena: Vec<Node>,
}

type R<T> = Result<T, String>;

impl Vm<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        if self.data.len() - self.pos < n {
            return Err(format!(
                "truncated: needs {n} more bytes, {} left",
                self.data.len() - self.pos
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64_len(&mut self) -> R<usize> {
        let n = u64::from_le_bytes(self.take(8)?.try_into().unwrap());
        usize::try_from(n).map_err(|_| format!("length {n} too large"))
    }

    /// A newline-terminated line (protocol 0 arguments), without the newline.
    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("truncated: missing end of line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> R<Obj> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec())
            .map(Obj::Str)
            .map_err(|_| "invalid UTF-8 in a str".to_string())
    }

    fn node(&mut self, n: Node) -> Obj {
        self.arena.push(n);
        Obj::Node(self.arena.len() - 1)
    }

    fn pop(&mut self) -> R<Obj> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("stack underflow (pop past a MARK)".into());
        }
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn top(&mut self) -> R<&mut Obj> {
        self.stack
            .last_mut()
            .ok_or_else(|| "stack underflow".into())
    }

    fn pop_mark(&mut self) -> R<Vec<Obj>> {
        let m = self.marks.pop().ok_or("MARK expected but none is open")?;
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&self, i: u32) -> R<Obj> {
        self.memo
            .get(&i)
            .cloned()
            .ok_or_else(|| format!("memo key {i} not found"))
    }

    fn memo_put(&mut self, i: u32) -> R<()> {
        let v = self.stack.last().cloned().ok_or("stack underflow")?;
        self.memo.insert(i, v);
        Ok(())
    }

    /// Appends `items` to the list (or opaque object) `target`.
    fn extend(&mut self, target: &Obj, items: Vec<Obj>) -> R<()> {
        match target {
            Obj::Node(i) => match &mut self.arena[*i] {
                Node::List(v) | Node::Set(v) => v.extend(items),
                Node::Object { list_items, .. } => list_items.extend(items),
                _ => return Err("APPEND(S) on something that is not a list".into()),
            },
            _ => return Err("APPEND(S) on something that is not a list".into()),
        }
        Ok(())
    }

    /// Sets `pairs` (flat: k, v, k, v, …) on the dict (or opaque object) `target`.
    fn set_items(&mut self, target: &Obj, flat: Vec<Obj>) -> R<()> {
        if !flat.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of items".into());
        }
        let mut it = flat.into_iter();
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        let bad = || "SETITEM(S) on something that is not a dict".to_string();
        let Obj::Node(i) = target else {
            return Err(bad());
        };
        match &mut self.arena[*i] {
            Node::Dict(d) => {
                for (k, v) in pairs {
                    // Python dict semantics: an existing key keeps its place and takes the new value.
                    if let Some(slot) = d.iter_mut().find(|(old, _)| obj_key_eq(old, &k)) {
                        slot.1 = v;
                    } else {
                        d.push((k, v));
                    }
                }
            }
            Node::Object { dict_items, .. } => dict_items.extend(pairs),
            _ => return Err(bad()),
        }
        Ok(())
    }

    /// `callable(*args)`: evaluates the few plain-data constructors, else builds an opaque object.
    fn call(&mut self, callable: Obj, args: Obj) -> R<Obj> {
        if let Obj::Global(module, name) = &callable {
            let arg_items = match &args {
                Obj::Node(i) => match &self.arena[*i] {
                    Node::Tuple(v) => Some(v.clone()),
                    _ => None,
                },
                _ => None,
            };
            let builtin = matches!(module.as_str(), "builtins" | "__builtin__");
            match (module.as_str(), name.as_str(), arg_items.as_deref()) {
                ("collections", "OrderedDict", Some([])) => {
                    return Ok(self.node(Node::Dict(vec![])))
                }
                (_, "dict", Some([])) if builtin => return Ok(self.node(Node::Dict(vec![]))),
                (_, "set" | "frozenset", Some([])) if builtin => {
                    return Ok(self.node(Node::Set(vec![])))
                }
                (_, "set" | "frozenset", Some([Obj::Node(j)])) if builtin => {
                    if let Node::List(v) | Node::Tuple(v) | Node::Set(v) = &self.arena[*j] {
                        let v = v.clone();
                        return Ok(self.node(Node::Set(v)));
                    }
                }
                ("collections", "OrderedDict", Some([Obj::Node(j)])) => {
                    if let Node::List(v) | Node::Tuple(v) = &self.arena[*j] {
                        let mut flat = Vec::new();
                        for pair in v.clone() {
                            match &pair {
                                Obj::Node(p) => match &self.arena[*p] {
                                    Node::Tuple(kv) | Node::List(kv) if kv.len() == 2 => {
                                        flat.extend(kv.iter().cloned())
                                    }
                                    _ => return Err("OrderedDict items must be pairs".into()),
                                },
                                _ => return Err("OrderedDict items must be pairs".into()),
                            }
                        }
                        let d = self.node(Node::Dict(vec![]));
                        self.set_items(&d, flat)?;
                        return Ok(d);
                    }
                }
                ("_codecs", "encode", Some([Obj::Str(s), Obj::Str(enc)]))
                    if enc == "latin1" || enc == "latin-1" =>
                {
                    let bytes = s
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).map_err(|_| "non-latin1 character"))
                        .collect::<Result<Vec<u8>, _>>()?;
                    return Ok(Obj::Bytes(bytes));
                }
                _ => {}
            }
        }
        Ok(self.node(Node::Object {
            callable,
            args,
            state: None,
            list_items: vec![],
            dict_items: vec![],
        }))
    }

    fn run(&mut self, op_start: &mut usize) -> R<Obj> {
        loop {
            *op_start = self.pos;
            let op = self.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(format!("unsupported pickle protocol {p}"));
                    }
                }
                // FRAME: an 8-byte frame length; frames are transparent here.
                0x95 => {
                    self.take(8)?;
                }
                // STOP
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                // MARK, POP, POP_MARK, DUP
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                // Constants.
                b'N' => self.stack.push(Obj::None),
                0x88 => self.stack.push(Obj::Bool(true)),
                0x89 => self.stack.push(Obj::Bool(false)),
                // Integers.
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.stack.push(Obj::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Obj::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Obj::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        let n = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                        usize::try_from(n).map_err(|_| "negative LONG4 length")?
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(long_from_le(b));
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l.as_str() {
                        "01" => Obj::Bool(true),
                        "00" => Obj::Bool(false),
                        s => Obj::Int(s.parse().map_err(|_| format!("bad INT {s:?}"))?),
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let l = self.line()?;
                    let s = l.trim_end_matches('L');
                    let v = s.parse().map_err(|_| format!("LONG {s:?} too large"))?;
                    self.stack.push(Obj::Int(v));
                }
                // Floats.
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.stack.push(Obj::Float(v));
                }
                b'F' => {
                    let l = self.line()?;
                    let v = l.parse().map_err(|_| format!("bad FLOAT {l:?}"))?;
                    self.stack.push(Obj::Float(v));
                }
                // Strings and bytes.
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = self.u64_len()?;
                    let v = self.utf8(n)?;
                    self.stack.push(v);
                }
                // BINSTRING / SHORT_BINSTRING: Python 2 str; text if UTF-8, else bytes.
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(match String::from_utf8(b) {
                        Ok(s) => Obj::Str(s),
                        Err(e) => Obj::Bytes(e.into_bytes()),
                    });
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.u64_len()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Obj::Bytes(b));
                }
                // UNICODE (protocol 0, raw-unicode-escape; plain text is read as is).
                b'V' => {
                    let l = self.line()?;
                    self.stack.push(Obj::Str(l));
                }
                // Containers.
                b'}' => {
                    let v = self.node(Node::Dict(vec![]));
                    self.stack.push(v);
                }
                b']' => {
                    let v = self.node(Node::List(vec![]));
                    self.stack.push(v);
                }
                b')' => {
                    let v = self.node(Node::Tuple(vec![]));
                    self.stack.push(v);
                }
                0x8f => {
                    let v = self.node(Node::Set(vec![]));
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let v = self.node(Node::Tuple(items));
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.node(Node::Tuple(items));
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.node(Node::List(items));
                    self.stack.push(v);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.node(Node::Set(items));
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = self.node(Node::Dict(vec![]));
                    self.set_items(&d, items)?;
                    self.stack.push(d);
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.top()?.clone();
                    self.extend(&target, vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.extend(&target, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.set_items(&target, items)?;
                }
                // Memo.
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                b'p' => {
                    let l = self.line()?;
                    let i = l.parse().map_err(|_| format!("bad PUT index {l:?}"))?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'g' => {
                    let l = self.line()?;
                    let i = l.parse().map_err(|_| format!("bad GET index {l:?}"))?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                // Globals and calls.
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Obj::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Obj::Str(m), Obj::Str(n)) => self.stack.push(Obj::Global(m, n)),
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let both = self.node(Node::Tuple(vec![args, kwargs]));
                    let v = self.node(Node::Object {
                        callable,
                        args: both,
                        state: None,
                        list_items: vec![],
                        dict_items: vec![],
                    });
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    // BUILD on a plain container (e.g. the `_metadata` attribute of a state dict's
                    // OrderedDict) sets Python attributes that carry no data: ignored.
                    if let Obj::Node(i) = target {
                        if let Node::Object { state: s, .. } = &mut self.arena[i] {
                            *s = Some(state);
                        }
                    }
                }
                // Persistent ids.
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.node(Node::PersId(pid));
                    self.stack.push(v);
                }
                b'P' => {
                    let l = self.line()?;
                    let v = self.node(Node::PersId(Obj::Str(l)));
                    self.stack.push(v);
                }
                _ => {
                    return Err(format!(
                        "unknown or unsupported pickle opcode 0x{op:02x}{}",
                        if op.is_ascii_graphic() {
                            format!(" ({:?})", op as char)
                        } else {
                            String::new()
                        }
                    ))
                }
            }
        }
    }

    fn to_value(&self, o: &Obj, depth: usize, budget: &mut usize) -> R<Value> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "objects nested deeper than {MAX_DEPTH} levels (a cyclic pickle?)"
            ));
        }
        if *budget == 0 {
            return Err("too many objects (shared references expand beyond the limit)".into());
        }
        *budget -= 1;
        let d = depth + 1;
        let seq = |v: &[Obj], budget: &mut usize| -> R<Vec<Value>> {
            v.iter().map(|x| self.to_value(x, d, budget)).collect()
        };
        let pairs = |v: &[(Obj, Obj)], budget: &mut usize| -> R<Vec<(Value, Value)>> {
            v.iter()
                .map(|(k, x)| Ok((self.to_value(k, d, budget)?, self.to_value(x, d, budget)?)))
                .collect()
        };
        Ok(match o {
            Obj::None => Value::None,
            Obj::Bool(b) => Value::Bool(*b),
            Obj::Int(i) => Value::Int(*i),
            Obj::BigInt(b) => Value::BigInt(b.clone()),
            Obj::Float(f) => Value::Float(*f),
            Obj::Str(s) => Value::Str(s.clone()),
            Obj::Bytes(b) => Value::Bytes(b.clone()),
            Obj::Global(m, n) => Value::Global {
                module: m.clone(),
                name: n.clone(),
            },
            Obj::Node(i) => match &self.arena[*i] {
                Node::Tuple(v) => Value::Tuple(seq(v, budget)?),
                Node::List(v) => Value::List(seq(v, budget)?),
                Node::Set(v) => Value::Set(seq(v, budget)?),
                Node::Dict(v) => Value::Dict(pairs(v, budget)?),
                Node::PersId(p) => Value::PersistentId(Box::new(self.to_value(p, d, budget)?)),
                Node::Object {
                    callable,
                    args,
                    state,
                    list_items,
                    dict_items,
                } => Value::Object(Box::new(Object {
                    callable: self.to_value(callable, d, budget)?,
                    args: self.to_value(args, d, budget)?,
                    state: match state {
                        Some(s) => Some(self.to_value(s, d, budget)?),
                        None => None,
                    },
                    list_items: seq(list_items, budget)?,
                    dict_items: pairs(dict_items, budget)?,
                })),
            },
        })
    }
}

/// Dict-key equality for the key types pickles use (str, int, bool, float, bytes, None).
fn obj_key_eq(a: &Obj, b: &Obj) -> bool {
    match (a, b) {
        (Obj::Str(x), Obj::Str(y)) => x == y,
        (Obj::Bytes(x), Obj::Bytes(y)) => x == y,
        (Obj::Int(x), Obj::Int(y)) => x == y,
        (Obj::Bool(x), Obj::Bool(y)) => x == y,
        (Obj::Int(x), Obj::Bool(y)) | (Obj::Bool(y), Obj::Int(x)) => *x == *y as i64,
        (Obj::Float(x), Obj::Float(y)) => x == y,
        (Obj::None, Obj::None) => true,
        (Obj::BigInt(x), Obj::BigInt(y)) => x == y,
        _ => false,
    }
}

/// A `LONG1`/`LONG4` integer (little-endian two's complement): an i64 when it fits.
fn long_from_le(b: Vec<u8>) -> Obj {
    if b.len() <= 8 {
        let neg = b.last().is_some_and(|&x| x & 0x80 != 0);
        let mut buf = if neg { [0xffu8; 8] } else { [0u8; 8] };
        buf[..b.len()].copy_from_slice(&b);
        Obj::Int(i64::from_le_bytes(buf))
    } else {
        Obj::BigInt(b)
    }
}
