#!/usr/bin/env python3
"""Emulates torch.save without torch: writes the small PyTorch checkpoints of tests/data/.

Only the standard library is used. Fake `torch` and `torch._utils` modules hold stand-ins for the storage classes
(`torch.FloatStorage`, ...), the dtypes (`torch.int32`) and the rebuild functions (`_rebuild_tensor_v2`, ...), so
that the standard `pickle.Pickler` (the C pickler torch itself uses, protocol 2 as torch.save's default) emits
exactly the opcodes torch emits: GLOBAL 'torch._utils' '_rebuild_tensor_v2', REDUCE of `collections.OrderedDict`
for the state dict and the backward hooks, BINPERSID of ('storage', <GLOBAL torch.FloatStorage>, key, location,
numel[, view_metadata]), the same memoisation (BINPUT / BINGET).

Files written (all reproducible byte for byte; the Rust tests in src/data/checkpoint.rs read them):
* ckpt_zip.pth.tar     {"epoch", "state_dict", "optimizer"} in the zip format of torch >= 1.6: records
                       archive/data.pkl, archive/byteorder, archive/data/<key> (raw little-endian storages,
                       sorted keys), archive/version, archive/.data/serialization_id; stored uncompressed, the data
                       of each record aligned to 64 bytes with an 'FB' extra field as torch's zip writer does.
* ckpt_legacy.pth.tar  the same object in the legacy format of torch <= 1.5: pickles of the magic number, the
                       protocol version 1001 and sys_info, the object pickle, the sorted list of storage keys, then
                       each storage as an 8-byte little-endian element count followed by its raw bytes.
* bare_zip.pth         a bare state dict (OrderedDict at the top), zip format with the top folder "model":
                       _rebuild_parameter, a HalfStorage, and _rebuild_tensor_v3 on a torch.UntypedStorage.
* model_legacy.pth     {"model": <the same state dict>} in the legacy format.
* bad_view.pth         (legacy) a tensor whose shape/stride reach past the end of its storage.
* bad_global.pth       (zip) a state-dict value built by a global that is not a tensor constructor.
* writer_zip.pth.tar, writer_noepoch_zip.pth.tar, writer_legacy.pth.tar
                       what torch.save writes for the 12-entry state dict of `writer_state_dict()` (one contiguous
                       CPU storage per tensor, keys "0".."11", sys_info long size 8), with and without "epoch": the
                       reference bytes of the Rust writer (src/data/torch_writer.rs), whose tests rebuild the same
                       state dict and compare the pickles and records byte for byte.

The state dict of the two `ckpt_*` files: conv.weight (2, 3) and its transpose conv.weight_t (3, 2) (stride (1, 3))
on one storage; lin.bias / lin.weight on one storage at offsets 1 and 3; bn.num_batches_tracked an int64 scalar;
bn.running_var a DoubleStorage view with stride 2; empty (0, 3). The optimizer part holds nested dicts, lists,
tuples, None, a big integer, a float tensor and an object of an unknown class (a GLOBAL the reader does not know).

Run: python3 tests/data/make_torch_checkpoints.py   (from the repository root)
"""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------------------------------------------
# Fake torch modules: pickle writes classes and functions as GLOBAL <__module__> <__qualname__> after checking
# that sys.modules[module].<name> is the same object.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils

# storage class name -> struct format of one element
STORAGE_FORMATS = {
    "FloatStorage": "f",
    "DoubleStorage": "d",
    "HalfStorage": "e",
    "LongStorage": "q",
    "IntStorage": "i",
    "UntypedStorage": "B",
}
for _name in STORAGE_FORMATS:
    _cls = type(_name, (), {})
    _cls.__module__ = "torch"
    _cls.__qualname__ = _name
    setattr(torch, _name, _cls)


class DType:
    """torch.dtype pickles as GLOBAL torch <name> (its __reduce__ returns the attribute name)."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return self.name


DType.__module__ = "torch"
torch.int32 = DType("int32")


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


def _rebuild_tensor_v3(*args):
    raise NotImplementedError


def _rebuild_parameter(*args):
    raise NotImplementedError


for _f in (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter):
    _f.__module__ = "torch._utils"
    setattr(torch_utils, _f.__name__, _f)

# An unknown class, as a learning-rate scheduler or an AMP scaler might appear in a training checkpoint.
sys.modules["sitsgpu_test"] = types.ModuleType("sitsgpu_test")
sched = types.ModuleType("sitsgpu_test.sched")
sys.modules["sitsgpu_test.sched"] = sched


class WarmupScheduler:
    def __init__(self, warmup, factors):
        self.warmup = warmup
        self.factors = factors

    def __reduce__(self):
        return (WarmupScheduler, (self.warmup,), {"factors": self.factors, "last_epoch": 11})


WarmupScheduler.__module__ = "sitsgpu_test.sched"
sched.WarmupScheduler = WarmupScheduler


# ---------------------------------------------------------------------------------------------------------------
class Storage:
    """A typed storage: its torch class name and its elements."""

    def __init__(self, type_name, values, legacy_key=None):
        self.type_name = type_name
        self.values = list(values)
        self.legacy_key = legacy_key  # legacy format: str(storage._cdata), an address
        self.key = None  # zip format: assigned in first-use order, "0", "1", ...

    def numel(self):
        return len(self.values)

    def raw(self):
        fmt = STORAGE_FORMATS[self.type_name]
        return struct.pack("<%d%s" % (len(self.values), fmt), *self.values)


class Tensor:
    def __init__(self, storage, offset, size, stride, rebuild="v2", dtype=None):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.rebuild, self.dtype = rebuild, dtype

    def __reduce_ex__(self, proto):
        # torch.Tensor._reduce_ex_internal: (storage, storage_offset, size, stride, requires_grad, backward_hooks)
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        if self.rebuild == "v3":
            return (_rebuild_tensor_v3, args + (self.dtype,))
        return (_rebuild_tensor_v2, args)


class Parameter:
    """nn.Parameter: _rebuild_parameter(data, requires_grad, backward_hooks)."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (self.tensor, True, collections.OrderedDict()))


class ZipPickler(pickle.Pickler):
    """torch.serialization._save's persistent_id: ('storage', type, key, location, numel)."""

    def __init__(self, f, location):
        super().__init__(f, protocol=2)
        self.location = location
        self.storages = {}

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        if obj.key is None:
            obj.key = str(len(self.storages))  # the same str object every time: BINGET on reuse, as in torch
            self.storages[obj.key] = obj
        numel = len(obj.raw()) if obj.type_name == "UntypedStorage" else obj.numel()
        return ("storage", getattr(torch, obj.type_name), obj.key, self.location, numel)


class LegacyPickler(pickle.Pickler):
    """torch.serialization._legacy_save's persistent_id: ('storage', type, key, location, numel, view_metadata)."""

    def __init__(self, f, location):
        super().__init__(f, protocol=2)
        self.location = location
        self.storages = {}

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.legacy_key] = obj
        key = str(int(obj.legacy_key))  # str(obj._cdata): a new str object each time
        return ("storage", getattr(torch, obj.type_name), key, self.location, obj.numel(), None)


def write_zip(path, obj, prefix, location):
    buf = io.BytesIO()
    pickler = ZipPickler(buf, location)
    pickler.dump(obj)
    records = [("data.pkl", buf.getvalue()), ("byteorder", b"little")]
    for key in sorted(pickler.storages):
        records.append(("data/" + key, pickler.storages[key].raw()))
    records.append(("version", b"3\n"))
    records.append((".data/serialization_id", b"1234567890123456789012345678901234567890"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in records:
            full = prefix + "/" + name
            info = zipfile.ZipInfo(full, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            # PyTorchStreamWriter pads the local header with an 'FB' extra field so the data starts at a
            # multiple of 64 bytes.
            header = 30 + len(full.encode()) + 4
            pad = (-(zf.fp.tell() + header)) % 64
            info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
            zf.writestr(info, data)
    with open(path, "wb") as f:
        f.write(out.getvalue())


MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def write_legacy(path, obj, location, long_size=4):
    f = io.BytesIO()
    sys_info = dict(
        protocol_version=PROTOCOL_VERSION, little_endian=True, type_sizes=dict(short=2, int=4, long=long_size)
    )
    pickle.dump(MAGIC_NUMBER, f, protocol=2)
    pickle.dump(PROTOCOL_VERSION, f, protocol=2)
    pickle.dump(sys_info, f, protocol=2)
    pickler = LegacyPickler(f, location)
    pickler.dump(obj)
    keys = sorted(pickler.storages.keys())
    pickle.dump(keys, f, protocol=2)
    for key in keys:
        storage = pickler.storages[key]
        f.write(struct.pack("<q", storage.numel()))
        f.write(storage.raw())
    with open(path, "wb") as out:
        out.write(f.getvalue())


# ---------------------------------------------------------------------------------------------------------------
def full_checkpoint():
    # Legacy keys are addresses; their sorted (string) order differs from the order of first use.
    a = Storage("FloatStorage", [0.5, -1.0, 2.25, 3.0, -4.5, 5.75], "94823577401360")
    b = Storage("FloatStorage", [10.0, 11.0, 12.0, 13.0, 14.0], "140234567890112")
    c = Storage("LongStorage", [7], "94823577399808")
    d = Storage("DoubleStorage", [0.25, 1.5, -3.0, 1e-3], "2")
    e = Storage("FloatStorage", [], "94823577402000")
    step = Storage("FloatStorage", [3.0], "94823577403000")
    exp_avg = Storage("FloatStorage", [0.125, -0.25], "94823577404000")
    state_dict = collections.OrderedDict()
    state_dict["conv.weight"] = Tensor(a, 0, (2, 3), (3, 1))
    state_dict["conv.weight_t"] = Tensor(a, 0, (3, 2), (1, 3))
    state_dict["lin.bias"] = Tensor(b, 1, (2,), (1,))
    state_dict["lin.weight"] = Tensor(b, 3, (1, 2), (2, 1))
    state_dict["bn.num_batches_tracked"] = Tensor(c, 0, (), ())
    state_dict["bn.running_var"] = Tensor(d, 0, (2,), (2,))
    state_dict["empty"] = Tensor(e, 0, (0, 3), (3, 1))
    # nn.Module.state_dict() sets a _metadata attribute: pickled as BUILD with {'_metadata': ...}.
    state_dict._metadata = collections.OrderedDict([("", {"version": 1}), ("bn", {"version": 2})])
    optimizer = {
        "state": {0: {"step": Tensor(step, 0, (), ()), "exp_avg": Tensor(exp_avg, 0, (2,), (1,))}},
        "param_groups": [
            {
                "lr": 0.001,
                "betas": (0.9, 0.999),
                "eps": 1e-08,
                "weight_decay": 0,
                "amsgrad": False,
                "foreach": None,
                "params": [0, 1, 2, 3],
            }
        ],
        "scheduler": WarmupScheduler(5, [0.1, 0.5, 1.0]),
        "big": 2**70,
    }
    return {"epoch": 12, "state_dict": state_dict, "optimizer": optimizer}


def misc_state_dict():
    w = Storage("FloatStorage", [1.0, 2.0, 3.0, 4.0], "500")
    h = Storage("HalfStorage", [1.5, -2.0, 65504.0, 2.0**-24], "400")
    raw = Storage("UntypedStorage", struct.pack("<3i", 9, -5, 100000), "300")
    sd = collections.OrderedDict()
    sd["weight"] = Parameter(Tensor(w, 0, (2, 2), (2, 1)))
    sd["half"] = Tensor(h, 0, (4,), (1,))
    sd["ints"] = Tensor(raw, 1, (2,), (1,), rebuild="v3", dtype=torch.int32)
    return sd


class Sparse:
    """A value of the state dict that no dense-tensor reader knows (as a sparse tensor would be)."""

    def __reduce__(self):
        return (_rebuild_sparse_tensor, ("sparse_coo", (2, 2)))


def _rebuild_sparse_tensor(*args):
    raise NotImplementedError


_rebuild_sparse_tensor.__module__ = "torch._utils"
torch_utils._rebuild_sparse_tensor = _rebuild_sparse_tensor


def writer_state_dict():
    """A module-like state dict: one storage per tensor, offset 0, contiguous strides (zero dims count as 1)."""
    shapes = [
        ("conv.weight", (2, 3, 1, 1)),
        ("conv.bias", (2,)),
        ("bn.weight", (2,)),
        ("bn.bias", (2,)),
        ("bn.running_mean", (2,)),
        ("bn.running_var", (2,)),
        ("bn.num_batches_tracked", ()),
        ("empty", (0, 3)),
        ("fc.weight", (3, 2)),
        ("fc.bias", (3,)),
        ("big.counter", ()),
        ("head.weight", (1, 4)),
    ]
    sd = collections.OrderedDict()
    for i, (name, shape) in enumerate(shapes):
        numel = 1
        for d in shape:
            numel *= d
        if name == "bn.num_batches_tracked":
            storage = Storage("LongStorage", [7], str(i))
        elif name == "big.counter":
            storage = Storage("LongStorage", [-(2**40) - 3], str(i))
        else:
            # i - 1.5 + k / 8: exact in float32, distinct per tensor.
            storage = Storage("FloatStorage", [i - 1.5 + k / 8 for k in range(numel)], str(i))
        stride = []
        acc = 1
        for d in reversed(shape):
            stride.insert(0, acc)
            acc *= max(d, 1)
        # torch passes a new tuple(self.size()) each time: list(shape) keeps equal shape constants (one object in
        # Python) from becoming memo hits.
        sd[name] = Tensor(storage, 0, list(shape), stride)
    return sd


def main():
    write_zip(os.path.join(HERE, "ckpt_zip.pth.tar"), full_checkpoint(), "archive", "cuda:0")
    write_legacy(os.path.join(HERE, "ckpt_legacy.pth.tar"), full_checkpoint(), "cuda:0")
    write_zip(os.path.join(HERE, "bare_zip.pth"), misc_state_dict(), "model", "cpu")
    write_legacy(os.path.join(HERE, "model_legacy.pth"), {"model": misc_state_dict()}, "cpu")
    s = Storage("FloatStorage", [1.0, 2.0, 3.0, 4.0, 5.0], "77")
    bad = collections.OrderedDict([("ok", Tensor(s, 0, (5,), (1,))), ("bad", Tensor(s, 1, (2, 2), (3, 1)))])
    write_legacy(os.path.join(HERE, "bad_view.pth"), bad, "cpu")
    write_zip(os.path.join(HERE, "bad_global.pth"), collections.OrderedDict([("w", Sparse())]), "archive", "cpu")
    write_zip(os.path.join(HERE, "writer_zip.pth.tar"), {"epoch": 5, "state_dict": writer_state_dict()}, "archive", "cpu")
    write_zip(os.path.join(HERE, "writer_noepoch_zip.pth.tar"), {"state_dict": writer_state_dict()}, "archive", "cpu")
    write_legacy(
        os.path.join(HERE, "writer_legacy.pth.tar"), {"epoch": 5, "state_dict": writer_state_dict()}, "cpu", long_size=8
    )


if __name__ == "__main__":
    main()
