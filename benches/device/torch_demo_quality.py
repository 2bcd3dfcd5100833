"""Test mIoU of the original PyTorch code trained in float32 and under automatic mixed precision, seed by seed:
the reference for how far sitsgpu's mixed mode may move the demo's quality from its float32 one.

    python3 benches/device/torch_demo_quality.py --utae-paps DIR --data PASTIS_DIR --seeds 1-16 \
        --modes fp32,fp16,bf16 --res-dir /tmp/demoq --out /tmp/demoq/results.json [--policy cuda|cpu]

DIR is a checkout of VSainteuf/utae-paps (none of its code is in this repository); PASTIS_DIR a PASTIS-format
folder (sitsgpu's synthetic demo: 40 patches of 32 × 32, 6-10 dates, folds 1-5).

Every run is `train_semantic.main` itself, on the configuration that train_semantic.py's own parser builds from
sitsgpu's demo flags (--model utae --encoder_widths "[8,8,8,16]" --decoder_widths "[8,8,8,16]" --out_conv
"[8,20]" --agg_mode att_group --encoder_norm group --n_head 4 --d_model 16 --d_k 4 --epochs 12 --batch_size 4
--lr 0.01 --fold 1 --rdm_seed S, the rest its defaults): its seeding (numpy and torch by rdm_seed), PASTIS_Dataset
with its folds and norm, pad_collate, get_model + weight_init, the weighted cross-entropy (void class 19 weighted
0), Adam, validation every epoch, the best-validation checkpoint reloaded for the test. The reported test mIoU
and OA are its test_metrics.json (the test_IoU of the best-validation epoch), the final train loss its
trainlog.json's last epoch.

* `fp32`: train_semantic.py unchanged (its `iterate`).
* `fp16`: `train_semantic.iterate` is replaced, for that run only, by `make_amp_iterate`'s loop: the same loop with
  forward + loss under `torch.autocast(device, dtype=float16)` and a `torch.amp.GradScaler` with its defaults
  (scale(loss).backward(), scaler.step(opt), scaler.update()); validation and test forwards under autocast too.
* `bf16`: the same with bfloat16 and no scaler.

Autocast policy (`--policy`). CPU autocast differs from CUDA's: its float32 list holds none of group_norm,
softmax and sum, so they run in float16 behind a float16 convolution. With it the
original model does not run: its `smart_forward` fills a float32 tensor (`torch.ones(...) * pad_value`) with the
encoder's output for the non-padded dates, which CUDA's autocast leaves float32 (its last op is a float32
group_norm) and the CPU's makes float16: "Index put requires the source and destination dtypes match" on the
first batch with padded dates, in fp16 and bf16 alike. `--policy cuda` (default) therefore registers, for the
AutocastCPU key only, CUDA's policy for the ops of CUDA's float32 lists that this model reaches: group_norm
(inputs cast to float32), softmax.int, log_softmax.int, sum and sum.dim_IntList (float32 output dtype, as
CUDA's `fp32_set_opt_dtype`). The lower-precision lists agree for what the model uses (convolutions,
transposed convolutions, linear, matmul/bmm); cross_entropy is float32 on both; the CPU's float32
reflection_pad2d only copies values. The code of DIR is not touched and fp32 runs never enter these kernels.
`--policy cpu` runs CPU autocast as it is (expect the error above, recorded in the row). Each AMP run records the
output dtype of every module kind on its first batch (`dtypes`), and the GradScaler's final scale and skipped
steps (scale decreases).

On the CPU, train_semantic.main fails after its test (`conf_mat.cpu().numpy()` on IoU's numpy matrix), before
writing test_metrics.json: every run here gets the test's matrix back as a tensor (`numpy_cm_fix`), nothing else.

Imports: train_semantic.py needs torchnet (only `tnt.meter.AverageValueMeter`; torchnet's `__init__` imports
visdom, replaced by an empty module when missing) and, through model_utils → PaPs, torch_scatter (never called
on the semantic path; an empty module stands in when missing). Threads default to 1 (`--threads`); runs are
sequential in one process (main reseeds at its start; a run reproduces train_semantic.py --device cpu bit for
bit at the same thread count, but another thread count changes float32 results, and so the trajectory). Prints
a table and a summary (mean ± sd per mode, paired difference mode − fp32 with its standard error, seeds ahead);
--out gets the raw results (JSON, or CSV when the name ends in .csv)."""
import argparse
import contextlib
import csv
import json
import math
import os
import sys
import time
import types

import torch

DEMO_FLAGS = [
    "--model", "utae", "--encoder_widths", "[8,8,8,16]", "--decoder_widths", "[8,8,8,16]",
    "--out_conv", "[8,20]", "--agg_mode", "att_group", "--encoder_norm", "group", "--n_head", "4",
    "--d_model", "16", "--d_k", "4", "--epochs", "12", "--batch_size", "4", "--lr", "0.01", "--fold", "1",
]
AMP = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def import_train_semantic(root):
    """train_semantic from DIR, with stand-ins for the two imports the semantic path never uses."""
    try:
        import visdom  # noqa: F401
    except ImportError:
        sys.modules["visdom"] = types.ModuleType("visdom")
    try:
        import torch_scatter  # noqa: F401
    except ImportError:
        mod = types.ModuleType("torch_scatter")

        def scatter_max(*a, **k):
            raise NotImplementedError("torch_scatter stand-in: PaPs is not used here")

        mod.scatter_max = scatter_max
        sys.modules["torch_scatter"] = mod
    sys.path.insert(0, os.path.abspath(root))
    import train_semantic
    return train_semantic


def demo_config(ts, data, res_dir, seed, device, extra):
    """The config train_semantic.py's __main__ builds: its parser, then the list arguments split into ints."""
    config = ts.parser.parse_args(DEMO_FLAGS + extra + [
        "--dataset_folder", data, "--res_dir", res_dir, "--rdm_seed", str(seed), "--device", device])
    for k, v in vars(config).items():
        if k in ts.list_args and v is not None:
            v = v.replace("[", "").replace("]", "")
            config.__setattr__(k, list(map(int, v.split(","))))
    assert config.num_classes == config.out_conv[-1]
    return config


LOW = (torch.float16, torch.bfloat16)


def cuda_autocast_policy():
    """CUDA autocast's float32 policy on the AutocastCPU key for the ops this model reaches (see the docstring).
    Returns the torch.library.Library holding the kernels (they live as long as it does)."""
    from torch.utils._pytree import tree_map

    def excluded():
        return torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU))

    def fp32(op):  # CUDA's `fp32`: eligible floating inputs cast to float32
        def kernel(*args, **kwargs):
            args, kwargs = tree_map(lambda t: t.float() if torch.is_tensor(t) and t.dtype in LOW else t,
                                    (args, kwargs))
            with excluded():
                return op(*args, **kwargs)
        return kernel

    def fp32_set_opt_dtype(op):  # CUDA's `fp32_set_opt_dtype`: dtype=float32 unless given
        def kernel(*args, **kwargs):
            if kwargs.get("dtype") is None and args[0].is_floating_point() and args[0].dtype != torch.float64:
                kwargs["dtype"] = torch.float32
            with excluded():
                return op(*args, **kwargs)
        return kernel

    lib = torch.library.Library("aten", "IMPL")
    aten = torch.ops.aten
    lib.impl("group_norm", fp32(aten.group_norm.default), "AutocastCPU")
    for name, op in [("softmax.int", aten.softmax.int), ("log_softmax.int", aten.log_softmax.int),
                     ("sum", aten.sum.default), ("sum.dim_IntList", aten.sum.dim_IntList)]:
        lib.impl(name, fp32_set_opt_dtype(op), "AutocastCPU")
    return lib


def make_amp_iterate(ts, dtype, info):
    """train_semantic.iterate with the forward + loss under autocast, and for float16 a GradScaler (one per
    run, kept across epochs). Metrics as the original: unscaled loss.item(), argmax of the output."""
    tnt, IoU = ts.tnt, ts.IoU
    scaler = torch.amp.GradScaler(torch.device(info["device"]).type) if dtype == torch.float16 else None
    info.update(skipped_steps=0, steps=0, dtypes={})

    def record_dtypes(model):
        hooks = []

        def hook(m, _inp, out):
            if isinstance(out, torch.Tensor):
                info["dtypes"].setdefault(type(m).__name__, set()).add(str(out.dtype).replace("torch.", ""))

        for m in model.modules():
            if len(list(m.children())) == 0:
                hooks.append(m.register_forward_hook(hook))
        return hooks

    def iterate(model, data_loader, criterion, config, optimizer=None, mode="train", device=None):
        loss_meter = tnt.meter.AverageValueMeter()
        iou_meter = IoU(num_classes=config.num_classes, ignore_index=config.ignore_index, cm_device=config.device)
        t_start = time.time()
        for i, batch in enumerate(data_loader):
            if device is not None:
                batch = ts.recursive_todevice(batch, device)
            (x, dates), y = batch
            y = y.long()
            hooks = record_dtypes(model) if not info["dtypes"] else []
            if mode != "train":
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype):
                    out = model(x, batch_positions=dates)
                    loss = criterion(out, y)
            else:
                optimizer.zero_grad()
                with torch.autocast(device.type, dtype=dtype):
                    out = model(x, batch_positions=dates)
                    loss = criterion(out, y)
            for h in hooks:
                h.remove()
            if hooks:
                info["dtypes"]["(output)"] = {str(out.dtype).replace("torch.", "")}
                info["dtypes"]["(loss)"] = {str(loss.dtype).replace("torch.", "")}
            if mode == "train":
                info["steps"] += 1
                if scaler is not None:
                    before = scaler.get_scale()
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                    info["skipped_steps"] += scaler.get_scale() < before
                    info["final_scale"] = scaler.get_scale()
                else:
                    loss.backward()
                    optimizer.step()
            with torch.no_grad():
                pred = out.argmax(dim=1)
            iou_meter.add(pred, y)
            loss_meter.add(loss.item())
        total_time = time.time() - t_start
        print("Epoch time : {:.1f}s".format(total_time))
        miou, acc = iou_meter.get_miou_acc()
        metrics = {"{}_accuracy".format(mode): acc, "{}_loss".format(mode): loss_meter.value()[0],
                   "{}_IoU".format(mode): miou, "{}_epoch_time".format(mode): total_time}
        if mode == "test":
            return metrics, iou_meter.conf_metric.value()
        return metrics

    return iterate


def numpy_cm_fix(iterate):
    """On the CPU, IoU keeps its confusion matrix in numpy and main's `conf_mat.cpu().numpy()` fails after the
    test (train_semantic.py --device cpu stops there, test_metrics.json unwritten): the test's matrix is handed
    back as a tensor. Nothing else changes."""

    def f(*args, **kwargs):
        r = iterate(*args, **kwargs)
        if kwargs.get("mode") == "test" and not torch.is_tensor(r[1]):
            return r[0], torch.as_tensor(r[1])
        return r

    return f


def run_one(ts, a, seed, mode):
    res_dir = os.path.join(a.res_dir, "{}-{}".format(mode, seed))
    config = demo_config(ts, a.data, res_dir, seed, a.device, a.extra)
    info = {"device": a.device}
    original = ts.iterate
    ts.iterate = numpy_cm_fix(make_amp_iterate(ts, AMP[mode], info) if AMP[mode] is not None else original)
    os.makedirs(res_dir, exist_ok=True)
    t0 = time.time()
    try:
        with open(os.path.join(a.res_dir, "{}-{}.log".format(mode, seed)), "w") as log, \
                contextlib.redirect_stdout(log):
            ts.main(config)
    except RuntimeError as e:
        if AMP[mode] is None:
            raise
        return {"seed": seed, "mode": mode, "error": str(e).splitlines()[0], "wall_s": round(time.time() - t0, 2)}
    finally:
        ts.iterate = original
    wall = time.time() - t0
    fold = os.path.join(res_dir, "Fold_{}".format(config.fold))
    test = json.load(open(os.path.join(fold, "test_metrics.json")))
    log = json.load(open(os.path.join(fold, "trainlog.json")))
    last = log[str(max(map(int, log)))]
    # main saves on val_IoU >= best (a NaN, a validation predicting only the void class, never saves)
    best = max((v["val_IoU"], int(e)) for e, v in log.items()
               if "val_IoU" in v and not math.isnan(v["val_IoU"]))
    row = {"seed": seed, "mode": mode, "test_mIoU": test["test_IoU"], "test_OA": test["test_accuracy"],
           "test_loss": test["test_loss"], "final_train_loss": last["train_loss"],
           "best_val_mIoU": best[0], "wall_s": round(wall, 2)}
    # the epoch main kept: the last one reaching the best validation mIoU
    row["best_epoch"] = max(int(e) for e, v in log.items() if v.get("val_IoU") == best[0])
    if AMP[mode] is not None:
        row["steps"] = info["steps"]
        if mode == "fp16":
            row["skipped_steps"] = int(info["skipped_steps"])
            row["final_scale"] = info.get("final_scale")
        row["dtypes"] = {k: sorted(v) for k, v in info["dtypes"].items()}
    return row


def mean_sd(xs):
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return m, sd


def summarise(rows, modes):
    by = {(r["seed"], r["mode"]): r for r in rows if "error" not in r}
    seeds = sorted({r["seed"] for r in rows if all((r["seed"], m) in by for m in modes)})
    out = {"seeds": seeds, "modes": {}}
    for m in modes if seeds else []:
        xs = [by[(s, m)]["test_mIoU"] for s in seeds]
        oa = [by[(s, m)]["test_OA"] for s in seeds]
        mean, sd = mean_sd(xs)
        d = {"mIoU_mean": mean, "mIoU_sd": sd, "OA_mean": mean_sd(oa)[0], "OA_sd": mean_sd(oa)[1],
             "wall_s_mean": mean_sd([by[(s, m)]["wall_s"] for s in seeds])[0]}
        if m != "fp32" and "fp32" in modes:
            diff = [by[(s, m)]["test_mIoU"] - by[(s, "fp32")]["test_mIoU"] for s in seeds]
            dm, dsd = mean_sd(diff)
            d.update(diff_mean=dm, diff_sd=dsd, diff_se=dsd / math.sqrt(len(diff)),
                     ahead=sum(x > 0 for x in diff), behind=sum(x < 0 for x in diff),
                     tied=sum(x == 0 for x in diff))
        out["modes"][m] = d
    return out


def parse_seeds(s):
    seeds = []
    for part in s.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            seeds += list(range(int(lo), int(hi) + 1))
        else:
            seeds.append(int(part))
    return seeds


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--utae-paps", required=True, help="checkout of VSainteuf/utae-paps")
    p.add_argument("--data", required=True, help="PASTIS-format folder")
    p.add_argument("--seeds", default="1-16", help="e.g. 1-16 or 1,3,5")
    p.add_argument("--modes", default="fp32,fp16,bf16")
    p.add_argument("--res-dir", required=True, help="train_semantic's res_dir per run: RES/<mode>-<seed>")
    p.add_argument("--out", required=True, help="raw results, JSON (or CSV if the name ends in .csv)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--policy", choices=["cuda", "cpu"], default="cuda",
                   help="autocast's float32 ops: CUDA's (default) or the CPU's own (see the docstring)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--extra", default="", help="more train_semantic.py flags, space-separated (e.g. '--epochs 2')")
    a = p.parse_args()
    a.extra = a.extra.split()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    modes = a.modes.split(",")
    assert all(m in AMP for m in modes), modes
    ts = import_train_semantic(a.utae_paps)
    lib = cuda_autocast_policy() if a.policy == "cuda" else None  # noqa: F841  (kept alive until the end)
    os.makedirs(a.res_dir, exist_ok=True)

    rows = []
    print("seed mode   test_mIoU test_OA final_train_loss best_epoch wall_s", flush=True)
    for seed in parse_seeds(a.seeds):
        for mode in modes:
            r = run_one(ts, a, seed, mode)
            rows.append(r)
            if "error" in r:
                print("{:4d} {:6s} error: {}".format(seed, mode, r["error"]), flush=True)
            else:
                print("{:4d} {:6s} {:9.4f} {:7.4f} {:16.4f} {:10d} {:6.1f}{}".format(
                    seed, mode, r["test_mIoU"], r["test_OA"], r["final_train_loss"], r["best_epoch"],
                    r["wall_s"], "  skipped {} scale {}".format(r["skipped_steps"], r["final_scale"])
                    if mode == "fp16" else ""), flush=True)
            summary = summarise(rows, modes)
            if a.out.endswith(".csv"):
                keys = ["seed", "mode", "test_mIoU", "test_OA", "test_loss", "final_train_loss", "best_val_mIoU",
                        "best_epoch", "wall_s", "steps", "skipped_steps", "final_scale", "error"]
                with open(a.out, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
                    w.writeheader()
                    w.writerows(rows)
            else:
                with open(a.out, "w") as f:
                    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "policy": a.policy,
                               "flags": DEMO_FLAGS + a.extra, "rows": rows, "summary": summary}, f, indent=1)

    summary = summarise(rows, modes)
    print("\nseeds {} (n = {})".format(summary["seeds"], len(summary["seeds"])))
    for m, d in summary["modes"].items():
        line = "{:5s} mIoU {:.4f} ± {:.4f}  OA {:.4f} ± {:.4f}  wall {:.1f}s".format(
            m, d["mIoU_mean"], d["mIoU_sd"], d["OA_mean"], d["OA_sd"], d["wall_s_mean"])
        if "diff_mean" in d:
            line += "  {} − fp32 {:+.4f} (se {:.4f}, sd {:.4f}); ahead {}, behind {}, tied {}".format(
                m, d["diff_mean"], d["diff_se"], d["diff_sd"], d["ahead"], d["behind"], d["tied"])
        print(line)
    dt = [r for r in rows if "dtypes" in r]
    for m in modes:
        first = next((r for r in dt if r["mode"] == m), None)
        if first:
            print("{} module output dtypes (first batch): {}".format(
                m, ", ".join("{} {}".format(k, "/".join(v)) for k, v in sorted(first["dtypes"].items()))))


if __name__ == "__main__":
    main()
