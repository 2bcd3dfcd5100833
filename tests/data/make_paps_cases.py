#!/usr/bin/env python3
"""U-TAE + PaPs and U-ConvLSTM + PaPs reference cases from the ORIGINAL code (VSainteuf/utae-paps), for the
geometries the shared fixtures do not reach: the official initialisation (boxes of one pixel), boxes one row
high / one column wide / 1 x 1, boxes larger than the patch and clipped at every border and corner, several
centers in one zone (`--no_supmax`), ragged date counts within a training batch, `--no_mask_conv`,
`--shape_size 24`, the RecUNet backbone — and a randomized sweep of weights, size-head shifts and parcels.

The original repository is not part of sitsgpu and none of its code is committed here: this script imports it
from a checkout given on the command line (`--utae-paps DIR`, e.g. the search tool's `fetch` of
VSainteuf/utae-paps, then `git archive HEAD | tar -x -C DIR`). Its only compiled dependency, torch_scatter, is
replaced by a pure-torch `scatter_max` written here (ties to the first index, as torch_scatter's CPU kernel).
Needs numpy, torch, geopandas and pandas (the original loader reads metadata.geojson with geopandas).

Cases are written to tests/data/fixtures/ (or `--out`) in the layout of ../shared/fixtures (manifest.json,
datasets/, <case>/conf.json with a "reference" section, weights.npz, expected/, train_step/, precision.json),
so tests/pytorch_parity/ runs them by kind ("panoptic") and conf.json, never by name:
- expected/: eval-mode outputs of the first batch (heatmap, saliency, center mask, centers, sizes, classes,
  confidences, shapes, boxes, instance masks, panoptic maps) and metrics.json (the original PanopticMeter over
  every eval batch);
- train_step/: 3 steps of zero_grad, forward in train mode (dropout 0, zones = target channel 2 unless
  --no_supmax), PaPsLoss, backward, Adam (lr 1e-3): losses.json (with the four terms and the train-time
  centers of every step), grads_step1.npz, weights_after.npz;
- precision.json: the deviation of this float32 run from the same run in float64 (the tolerances).
A case is kept only when the float64 run makes the same discrete decisions (centers, boxes, panoptic maps,
train-time centers) and no predicted size lies within 1e-3 of a rounding boundary; otherwise the next seed is
tried (the seed is recorded).

Run from the repository root:
    python3 tests/data/make_paps_cases.py --utae-paps /path/to/utae-paps            # the stored cases
    python3 tests/data/make_paps_cases.py --utae-paps DIR --sweep 40 --out /tmp/sweep  # a longer sweep
then `SITSGPU_FIXTURES=/tmp/sweep cargo test --release --test pytorch_parity pytorch_parity -- --exact
--nocapture` runs the sweep's cases on GPU and CPU. `--sweep N` writes N random cases (`paps_sweep_<k>`: random
weights seed, size-head shift in [-3, 20], shape size, mask CNN, supmax, parcels of random size and place)
beside a dataset of its own. Deterministic: the same versions give the same files.
"""

import argparse
import copy
import datetime
import json
import os
import sys
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE, BANDS, CLASSES, VOID = 16, 10, 20, 19
MEAN = [1200.0, 1400.0, 1500.0, 1900.0, 2400.0, 2700.0, 2850.0, 2950.0, 2750.0, 2300.0]
STD = [900.0, 950.0, 1000.0, 975.0, 925.0, 950.0, 975.0, 990.0, 880.0, 860.0]
REF_DATE = "2018-09-01"
SMALL_UTAE = dict(input_dim=10, encoder_widths=[8, 12, 16, 20], decoder_widths=[4, 8, 12, 20], out_conv=[8, 20],
                  str_conv_k=4, str_conv_s=2, str_conv_p=1, agg_mode="att_group", encoder_norm="group", n_head=4,
                  d_model=24, d_k=4, encoder=True, return_maps=False, pad_value=0, padding_mode="reflect")
SMALL_RECUNET = dict(input_dim=10, encoder_widths=[8, 12, 16, 20], decoder_widths=[4, 8, 12, 20], out_conv=[8, 20],
                     str_conv_k=4, str_conv_s=2, str_conv_p=1, temporal="lstm", input_size=SIDE,
                     encoder_norm="group", hidden_dim=6, encoder=True, padding_mode="zeros", pad_value=0)
PAPS = dict(num_classes=CLASSES, shape_size=8, mask_conv=True, min_confidence=0.2, min_remain=0.5,
            mask_threshold=0.4)


def install_torch_scatter_standin():
    """torch_scatter.scatter_max for 1-D inputs: per index the maximum and the first position holding it;
    positions of empty slots are len(src) (torch_scatter's convention)."""

    def scatter_max(src, index, dim=-1):
        n = src.shape[0]
        size = int(index.max()) + 1
        order = torch.argsort(index, stable=True)
        out = torch.zeros(size, dtype=src.dtype)
        arg = torch.full((size,), n, dtype=torch.long)
        for k in order.tolist():
            slot = int(index[k])
            if arg[slot] == n or src[k] > out[slot]:
                out[slot], arg[slot] = src[k], k
        return out, arg

    sys.modules["torch_scatter"] = types.SimpleNamespace(scatter_max=scatter_max)


# ---------------------------------------------------------------------------------------------------------------
# The dataset: 16 x 16 patches with parcels chosen for their geometry.
def designed_parcels(pid):
    """(y0, x0, y1, x1, class) rectangles; later ones overwrite earlier ones."""
    if pid == 11:  # one pixel, one row, one column, full width, corners, a void parcel
        return [(0, 0, 1, 1, 3), (3, 2, 4, 8, 5), (5, 14, 11, 15, 7), (13, 0, 15, 16, 2), (6, 4, 9, 7, 9),
                (8, 8, 11, 12, VOID), (15, 15, 16, 16, 11), (0, 11, 2, 16, 4)]
    if pid == 22:  # a parcel larger than most boxes, corners, borders
        return [(2, 2, 14, 14, 1), (14, 14, 16, 16, 6), (0, 14, 1, 16, 8), (5, 0, 9, 2, 10), (15, 0, 16, 5, 12)]
    return None


def random_parcels(rng, n):
    out = []
    for _ in range(n):
        h, w = int(rng.randint(1, SIDE + 1)), int(rng.randint(1, SIDE + 1))
        if rng.rand() < 0.4:
            h = int(rng.choice([1, 1, 2]))
        if rng.rand() < 0.3:
            w = int(rng.choice([1, 1, 2, SIDE]))
        y0, x0 = int(rng.randint(0, SIDE - h + 1)), int(rng.randint(0, SIDE - w + 1))
        out.append((y0, x0, y0 + h, x0 + w, int(rng.choice(list(range(1, 19)) + [VOID]))))
    return out


def rasterize(parcels):
    inst = np.zeros((SIDE, SIDE), np.int32)
    cls = np.zeros((SIDE, SIDE), np.uint8)
    for k, (y0, x0, y1, x1, c) in enumerate(parcels, start=1):
        inst[y0:y1, x0:x1] = k
        cls[y0:y1, x0:x1] = c
    ids = [i for i in np.unique(inst) if i != 0]
    remap = np.zeros(len(parcels) + 1, np.int32)
    remap[ids] = np.arange(1, len(ids) + 1)
    inst = remap[inst]
    # Centers (rounded centroid, moved onto the parcel if it falls outside), zones (nearest center, every
    # pixel), centerness (a Gaussian per parcel, exactly 1.0 at its center).
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    centers = []
    for i in range(1, len(ids) + 1):
        ys, xs = np.nonzero(inst == i)
        cy, cx = int(round(ys.mean())), int(round(xs.mean()))
        if inst[cy, cx] != i:
            k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
            cy, cx = int(ys[k]), int(xs[k])
        centers.append((cy, cx, max(1.0, (np.ptp(ys) + np.ptp(xs) + 2) / 6.0)))
    d = np.stack([(yy - cy) ** 2 + (xx - cx) ** 2 for cy, cx, _ in centers])
    zones = (np.argmin(d, axis=0) + 1).astype(np.int32)
    heat = np.zeros((SIDE, SIDE), np.float32)
    for (cy, cx, s), dd in zip(centers, d):
        heat = np.maximum(heat, np.exp(-dd / (2 * s * s)).astype(np.float32))
    for cy, cx, _ in centers:
        heat[cy, cx] = 1.0
    heat[heat >= 1.0] = 0.0
    for cy, cx, _ in centers:
        heat[cy, cx] = 1.0
    return inst, cls, zones, heat


def write_dataset(folder, patches, seed):
    """patches: [(id, dates, fold, parcels or None)]."""
    rng = np.random.RandomState(seed)
    for sub in ("DATA_S2", "ANNOTATIONS", "INSTANCE_ANNOTATIONS"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    features = []
    for pid, t, fold, parcels in patches:
        start = datetime.date(2018, 8, 20) + datetime.timedelta(days=int(rng.randint(0, 30)))
        gaps = np.cumsum(rng.randint(10, 40, size=t)) - 10
        dates = {str(i): int((start + datetime.timedelta(days=int(g))).strftime("%Y%m%d")) for i, g in enumerate(gaps)}
        while True:  # at least 3 parcels left after overlaps: the original's NMS fails on one candidate
            inst, cls, zones, heat = rasterize(parcels or random_parcels(rng, int(rng.randint(3, 9))))
            if parcels is not None or inst.max() >= 3:
                break
        season = np.sin(np.linspace(0, 3, t))[:, None, None, None] * rng.randint(200, 900, size=(1, BANDS, 1, 1))
        x = np.array(MEAN)[None, :, None, None] + season + rng.randint(-700, 700, size=(t, BANDS, SIDE, SIDE))
        x += (cls.astype(np.float64) * 37.0)[None, None]
        np.save(os.path.join(folder, "DATA_S2", f"S2_{pid}.npy"), x.astype(np.int16))
        target = np.zeros((3, SIDE, SIDE), np.uint8)
        target[0] = cls
        np.save(os.path.join(folder, "ANNOTATIONS", f"TARGET_{pid}.npy"), target)
        for name, a in (("INSTANCES", inst), ("ZONES", zones), ("HEATMAP", heat)):
            np.save(os.path.join(folder, "INSTANCE_ANNOTATIONS", f"{name}_{pid}.npy"), a)
        features.append({"type": "Feature", "properties": {"ID_PATCH": pid, "N_Parcel": int(inst.max()),
                                                           "Parcel_Cover": float((inst > 0).mean()),
                                                           "TILE": "t31tfj", "Fold": fold, "dates-S2": dates},
                         "geometry": None})
    with open(os.path.join(folder, "metadata.geojson"), "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f, indent=1)
    with open(os.path.join(folder, "NORM_S2_patch.json"), "w") as f:
        json.dump({f"Fold_{k}": {"mean": MEAN, "std": STD} for k in range(1, 6)}, f, indent=1)


# ---------------------------------------------------------------------------------------------------------------
# Cases.
CASES = {
    # The official initialisation, nothing shifted: nearly every box is 1 x 1 (the start of a real run).
    "paps_official_init": dict(seed=31, shifts={}),
    # A little larger: a mix of 1 x k, k x 1 and 1 x 1 boxes.
    "paps_one_pixel_sides": dict(seed=32, shifts={"size_mlp.6.bias": 1.0, "mask_cnn.5.bias": 2.0}),
    # Boxes larger than the patch, clipped at every border and corner.
    "paps_large_boxes": dict(seed=33, shifts={"size_mlp.6.bias": 18.0, "mask_cnn.5.bias": 2.0}),
    "paps_no_mask_conv": dict(seed=34, paps=dict(mask_conv=False), shifts={"size_mlp.6.bias": 3.0}),
    "paps_shape24": dict(seed=35, paps=dict(shape_size=24), shifts={"size_mlp.6.bias": 4.0, "mask_cnn.5.bias": 2.0}),
    # Local maxima as training centers: several centers in one zone.
    "paps_no_supmax": dict(seed=36, supmax=False, shifts={"size_mlp.6.bias": 2.0, "mask_cnn.5.bias": 2.0}),
    # U-ConvLSTM + PaPs (RecUNet backbone, small widths).
    "uconvlstm_paps_small": dict(seed=37, backbone="uconvlstm", shifts={"size_mlp.6.bias": 3.0,
                                                                       "mask_cnn.5.bias": 2.0}),
}
PATCHES = [(11, 6, 1, designed_parcels(11)), (22, 4, 2, designed_parcels(22)), (33, 7, 3, None), (44, 5, 4, None)]
EVAL_BATCHES = [[11, 22], [33, 44]]
TRAIN_ORDER = [EVAL_BATCHES[0], EVAL_BATCHES[1], EVAL_BATCHES[0]]


def sweep_cases(n, seed0):
    rng = np.random.RandomState(seed0)
    out = {}
    for k in range(n):
        paps = dict(shape_size=int(rng.choice([4, 8, 16, 24])), mask_conv=bool(rng.rand() < 0.7))
        shifts = {"size_mlp.6.bias": float(np.round(rng.uniform(-3, 20), 2))}
        if paps["mask_conv"]:
            shifts["mask_cnn.5.bias"] = float(np.round(rng.uniform(0, 3), 2))
        out[f"paps_sweep_{k}"] = dict(seed=1000 + 17 * k, paps=paps, shifts=shifts, supmax=bool(rng.rand() < 0.8),
                                      backbone="uconvlstm" if rng.rand() < 0.15 else "utae")
    return out


class Original:
    """The original modules, imported from the checkout."""

    def __init__(self, repo):
        install_torch_scatter_standin()
        sys.path.insert(0, os.path.abspath(repo))
        from src.backbones import utae
        from src.dataset import PASTIS_Dataset
        from src.learning.weight_init import weight_init
        from src.panoptic.metrics import PanopticMeter
        from src.panoptic.paps import PaPs
        from src.panoptic.paps_loss import PaPsLoss
        from src.utils import pad_collate

        self.utae, self.Dataset, self.weight_init = utae, PASTIS_Dataset, weight_init
        self.Meter, self.PaPs, self.Loss, self.collate = PanopticMeter, PaPs, PaPsLoss, pad_collate


def kwargs_of(case):
    paps = dict(PAPS, **case.get("paps", {}))
    if case.get("backbone", "utae") == "uconvlstm":
        return {"RecUNet": dict(SMALL_RECUNET), "PaPs": paps}
    return {"UTAE": dict(SMALL_UTAE), "PaPs": paps}


def build(orig, case, seed):
    kw = kwargs_of(case)
    np.random.seed(seed)
    torch.manual_seed(seed)
    enc = orig.utae.RecUNet(**kw["RecUNet"]) if "RecUNet" in kw else orig.utae.UTAE(**kw["UTAE"])
    model = orig.PaPs(enc, **kw["PaPs"])
    model.apply(orig.weight_init)
    with torch.no_grad():
        for name, v in case["shifts"].items():
            params = dict(model.named_parameters())
            if name in params:
                params[name] += v
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def batch(orig, ds, ids, dtype):
    order = [int(i) for i in ds.id_patches]
    (x, dates), y = orig.collate([ds[order.index(i)] for i in ids])
    return x.to(dtype), dates, y.to(dtype)


def state_np(model):
    return {k: v.detach().numpy().astype(np.int64 if k.endswith("num_batches_tracked") else np.float32)
            for k, v in model.state_dict().items()}


def jiggle(model, noise):
    """With a noise generator: every weight times (1 + 2^-21 · N(0, 1)), a few float32 ulps — the rounding
    differences a reimplementation brings into every activation (a ReLU or argmax decision that this moves
    is one that no float32 implementation can be required to reproduce)."""
    if noise is not None:
        with torch.no_grad():
            for v in model.parameters():
                v.mul_(1 + torch.randn(v.shape, generator=noise, dtype=torch.float64).to(v.dtype) * 2.0 ** -21)


def run(orig, case, seed, ds, dtype, noise=None):
    """Eval outputs of every eval batch, the meter, then the 3 train steps (tensors the original creates
    itself, such as the dummy batch of `smart_forward`, take the default dtype and `.float()` gives `dtype`
    meanwhile: the float64 run is the same computation in float64)."""
    model = build(orig, case, seed).to(dtype)  # drawn in float32 either way
    before, float_before = torch.get_default_dtype(), torch.Tensor.float
    torch.set_default_dtype(dtype)
    if dtype == torch.float64:
        torch.Tensor.float = lambda t, *a, **k: t.to(torch.float64)
    try:
        return run_in(orig, model, case, ds, dtype, noise)
    finally:
        torch.set_default_dtype(before)
        torch.Tensor.float = float_before


def run_in(orig, model, case, ds, dtype, noise=None):
    init = state_np(model)
    ints, floats, sizes = {}, {}, []
    meter = orig.Meter(num_classes=CLASSES, void_label=VOID)
    jiggle(model, noise)
    model.eval()
    with torch.no_grad():
        for bi, ids in enumerate(EVAL_BATCHES):
            x, dates, y = batch(orig, ds, ids, dtype)
            p = model(x, batch_positions=dates, pseudo_nms=True)
            sizes.append(p["size"].numpy().ravel())
            cb, ch, cw = torch.where(p["center_mask"])
            pano_sem = p["pano_semantic"].argmax(1)
            for i, pid in enumerate(ids):
                sel = (cb == i).nonzero().ravel()
                masks = [p["instance_masks"][int(m)].reshape(-1) for m in sel]
                tag = f"_{pid}.npy" if bi == 0 else f"_eval{bi}_{pid}"
                floats["heatmap" + tag] = p["heatmap"][i].numpy()
                floats["saliency" + tag] = p["saliency"][i].numpy()
                floats["center_size" + tag] = p["size"][sel].numpy()
                floats["center_semantic" + tag] = p["semantic"][sel].numpy()
                floats["center_confidence" + tag] = p["confidence"][sel].numpy().ravel()
                floats["instance_masks" + tag] = (torch.cat(masks) if masks else torch.zeros(0)).numpy()
                ints["center_mask" + tag] = p["center_mask"][i].numpy().astype(np.uint8)
                ints["centers" + tag] = torch.stack([ch[sel], cw[sel]], 1).numpy().astype(np.int64)
                ints["instance_boxes" + tag] = p["instance_boxes"][sel].numpy().astype(np.int64)
                ints["pano_instance" + tag] = p["pano_instance"][i].numpy().astype(np.int32)
                ints["pano_semantic" + tag] = pano_sem[i].numpy().astype(np.int32)
            # The meter last, on copies: PanopticMeter.add zeroes void pixels of the maps it is given in place.
            meter.add({k: v.clone() if torch.is_tensor(v) else v for k, v in p.items()}, y)
            # The raw shape logits of the centers (the model's shapes before the resize).
            shapes = shape_logits(model, x, dates, p)
            for i, pid in enumerate(ids):
                tag = f"_{pid}.npy" if bi == 0 else f"_eval{bi}_{pid}"
                floats["center_shape" + tag] = shapes[(cb == i).nonzero().ravel()].numpy()
    sq, rq, pq = meter.value()
    metrics = {"SQ": float(sq), "RQ": float(rq), "PQ": float(pq),
               "per_class_TP_FP_FN_sumIoU": meter.get_table().tolist(),
               "note": "official PanopticMeter(num_classes=20, void_label=19) over every eval batch"}
    model.train()
    crit = orig.Loss(l_center=1, l_size=1, l_shape=1, l_class=1, beta=4, void_label=VOID)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, per_step, centers, grads = [], [], [], {}
    for step, ids in enumerate(TRAIN_ORDER):
        x, dates, y = batch(orig, ds, ids, dtype)
        opt.zero_grad()
        jiggle(model, noise)
        zones = y[..., 2] if case.get("supmax", True) else None
        p = model(x, batch_positions=dates, zones=zones, pseudo_nms=True, heatmap_only=False)
        loss = crit(p, y)
        loss.backward()
        if step == 0:
            grads = {k: v.grad.detach().numpy().astype(np.float32) for k, v in model.named_parameters()
                     if v.grad is not None}
        if noise is not None:  # float32-level noise on every nonzero gradient (the conditioning check)
            for v in model.parameters():
                if v.grad is not None:
                    v.grad += (v.grad != 0) * torch.randn(v.grad.shape, generator=noise) * v.grad.abs().max() * 3e-7
        opt.step()
        losses.append(float(loss.item()))
        c, s, sh, cl = crit.value
        per_step.append({"center": float(c), "size": float(s), "shape": float(sh), "cls": float(cl),
                         "n_centers": int(p["center_mask"].sum())})
        centers.append([[int(v) for v in t] for t in zip(*torch.where(p["center_mask"]))])
        ints[f"train_boxes_step{step}"] = p["instance_boxes"].numpy().astype(np.int64)
        sizes.append(p["size"].detach().numpy().ravel())
    return dict(init=init, ints=ints, floats=floats, metrics=metrics, losses=losses, per_step=per_step,
                centers=centers, grads=grads, after=state_np(model), sizes=np.concatenate(sizes), model=model)


def shape_logits(model, x, dates, p):
    """The (M, S, S) shape logits of the eval centers, by the model's own modules on its own feature stack."""
    out, maps = model.encoder(x, batch_positions=dates)
    cb, ch, cw = torch.where(p["center_mask"])
    stack = torch.cat([m.permute(0, 2, 3, 1)[cb, ch // 2 ** (len(maps) - 1 - i), cw // 2 ** (len(maps) - 1 - i)]
                       for i, m in enumerate(maps)], dim=1)
    return model.shape_mlp(stack).view(-1, model.shape_size, model.shape_size)


def dev(a, b):
    return [float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)),
            float(np.max(np.abs(b.astype(np.float64)), initial=0.0))]


def stable(r32, r64):
    """Same discrete decisions in float32 and float64, no size near a rounding boundary."""
    if r32["centers"] != r64["centers"]:
        return "train centers differ in float64"
    for k, v in r32["ints"].items():
        if v.shape != r64["ints"][k].shape or (v != r64["ints"][k]).any():
            return f"{k} differs in float64"
    frac = np.abs(np.abs(r32["sizes"] - np.floor(r32["sizes"])) - 0.5)
    if frac.size and frac.min() < 1e-3:
        return f"a size within {frac.min():.1e} of a rounding boundary"
    return None


def spread(orig, case, seed, ds, r32, trials=4):
    """The eval batches and train steps again under float32-level noise on the weights (`jiggle`, before the
    eval and before every step) and on the gradients (3e-7 of each tensor's largest entry, every step): (why not,
    measured spread). A case whose train-time centers or boxes move is refused; otherwise
    the largest relative move of each loss term per step and the largest move of each weight after the steps
    are returned and stored in precision.json (the tests' tolerances are 4x the measured noise: Adam's first
    step turns a tiny gradient's sign into a full ±lr step, which a reimplementation cannot be asked to match)."""
    terms = [{k: 0.0 for k in ("center", "size", "shape", "cls")} for _ in r32["per_step"]]
    weights = {k: 0.0 for k in r32["after"]}
    for trial in range(trials):
        r = run(orig, case, seed, ds, torch.float32, noise=torch.Generator().manual_seed(trial))
        if r["centers"] != r32["centers"] or any((r["ints"][k] != v).any() for k, v in r32["ints"].items()):
            return "discrete decisions move under gradient noise", None
        for t, a, b in zip(terms, r["per_step"], r32["per_step"]):
            for key in t:
                t[key] = max(t[key], abs(a[key] - b[key]) / max(abs(b[key]), 1e-12))
        for k, v in r32["after"].items():
            if v.dtype == np.float32:
                weights[k] = max(weights[k], float(np.max(np.abs(r["after"][k] - v), initial=0.0)))
    return None, {"loss_terms": terms, "weights_after": weights}


def write_case(out, name, case, r32, r64, noise, dataset):
    cdir = os.path.join(out, name)
    for sub in ("expected", "train_step"):
        os.makedirs(os.path.join(cdir, sub), exist_ok=True)
    np.savez_compressed(os.path.join(cdir, "weights.npz"), **r32["init"])
    stored = {k: v for k, v in list(r32["floats"].items()) + list(r32["ints"].items()) if k.endswith(".npy")}
    for f, v in stored.items():
        np.save(os.path.join(cdir, "expected", f), v)
    with open(os.path.join(cdir, "expected", "metrics.json"), "w") as f:
        json.dump(r32["metrics"], f, indent=1)
    np.savez_compressed(os.path.join(cdir, "train_step", "grads_step1.npz"), **r32["grads"])
    np.savez_compressed(os.path.join(cdir, "train_step", "weights_after.npz"), **r32["after"])
    big = max(np.max(np.abs(g)) for g in r64["grads"].values())
    zero = [k for k, g in r64["grads"].items() if np.max(np.abs(g)) <= 1e-12 * big]
    info = {"losses": r32["losses"], "batches": TRAIN_ORDER,
            "optimizer": {"name": "Adam", "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.0,
                          "amsgrad": False},
            "zero_gradient_params": zero, "per_step": r32["per_step"], "train_centers": r32["centers"]}
    with open(os.path.join(cdir, "train_step", "losses.json"), "w") as f:
        json.dump(info, f, indent=1)
    precision = {
        "note": "deviation of the float32 run from the same run in float64: [max_abs_dev, max_abs_ref]; "
                "weights_after: [max_abs_dev from float64, max_abs_dev under float32 gradient noise, max_abs_ref]; "
                "loss_terms_noise: per step, the largest relative move of each term under that noise; "
                "integer arrays: n_mismatch",
        "expected": {f: dev(v, r64["floats"][f]) for f, v in r32["floats"].items() if f.endswith(".npy")},
        "grads_step1": {k: dev(v, r64["grads"][k]) for k, v in r32["grads"].items()},
        "weights_after": {k: [dev(v, r64["after"][k])[0], noise["weights_after"][k], dev(v, r64["after"][k])[1]]
                          for k, v in r32["after"].items() if v.dtype == np.float32 and k not in zero},
        "losses": {"f32": r32["losses"], "f64": r64["losses"]},
        "loss_terms_noise": noise["loss_terms"],
    }
    precision["expected"].update({f: {"n_mismatch": 0, "n": int(v.size)} for f, v in r32["ints"].items()
                                  if f.endswith(".npy")})
    with open(os.path.join(cdir, "precision.json"), "w") as f:
        json.dump(precision, f)
    kw = kwargs_of(case)
    paps = kw["PaPs"]
    n_params = sum(p.numel() for p in r32["model"].parameters() if p.requires_grad)
    backbone = case.get("backbone", "utae")
    widths = kw.get("UTAE", kw.get("RecUNet"))
    conf = {"backbone": backbone, "shape_size": paps["shape_size"], "mask_conv": paps["mask_conv"],
            "supmax": case.get("supmax", True), "l_center": 1, "l_size": 1, "l_shape": 1, "l_class": 1, "beta": 4,
            "min_remain": 0.5, "mask_threshold": 0.4, "min_confidence": 0.2,
            "encoder_widths": widths["encoder_widths"], "decoder_widths": widths["decoder_widths"],
            "out_conv": widths["out_conv"], "batch_size": 2, "lr": 0.001, "ref_date": REF_DATE,
            "void_label": VOID, "background_label": 0, "num_classes": CLASSES, "pad_value": 0,
            "dataset_folder": f"../datasets/{dataset}", "rdm_seed": case["seed"], "N_params": n_params,
            "reference": {
                "case": name, "kind": "panoptic", "source_repo": "VSainteuf/utae-paps (imported by "
                "tests/data/make_paps_cases.py from a local checkout; torch_scatter replaced by a pure-torch "
                "scatter_max)",
                "constructor": "src.panoptic.paps.PaPs(encoder, **PaPs) with encoder = src.backbones.utae."
                               + ("RecUNet(**RecUNet)" if backbone == "uconvlstm" else "UTAE(**UTAE)"),
                "constructor_kwargs": kw,
                "weights": "original initialisation (np/torch.manual_seed(rdm_seed), model.apply(weight_init)), "
                           "then bias_shift_after_init",
                "bias_shift_after_init": case["shifts"],
                "dataset_folder_relative_to_case": f"../datasets/{dataset}", "batch_size": 2,
                "eval_batches": EVAL_BATCHES, "expected_stored_for": EVAL_BATCHES[:1], "train_steps": 3,
                "train_batch_order": TRAIN_ORDER,
                "dropout": "every nn.Dropout set to p=0",
                "loss": "PaPsLoss(l_center=1, l_size=1, l_shape=1, l_class=1, beta=4, void_label=19); "
                        "model(x, batch_positions=dates, zones=y[..., 2] if supmax else None, pseudo_nms=True)",
                "optimizer": "torch.optim.Adam(model.parameters(), lr=1e-3) (no scheduler step)",
                "torch_version": torch.__version__}}
    with open(os.path.join(cdir, "conf.json"), "w") as f:
        json.dump(conf, f, indent=1)
    return n_params


def one_px(r):
    """How many train-step boxes have a side of one pixel, are 1 x 1, touch a border."""
    boxes = np.concatenate([v for k, v in r["ints"].items() if k.startswith("train_boxes")])
    h, w = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    border = (boxes[:, 0] == 0) | (boxes[:, 1] == 0) | (boxes[:, 2] == SIDE) | (boxes[:, 3] == SIDE)
    return {"boxes": int(len(boxes)), "one_px_side": int(((h == 1) | (w == 1)).sum()),
            "one_by_one": int(((h == 1) & (w == 1)).sum()), "at_border": int(border.sum()),
            "full_width": int((w == SIDE).sum())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utae-paps", required=True, help="a checkout of VSainteuf/utae-paps")
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures"))
    ap.add_argument("--sweep", type=int, default=0, help="write N random sweep cases instead of the stored ones")
    ap.add_argument("--sweep-seed", type=int, default=7)
    ap.add_argument("--only", default=None, help="comma-separated case names")
    args = ap.parse_args()
    torch.set_num_threads(1)
    orig = Original(args.utae_paps)
    if args.sweep:
        cases, dataset = sweep_cases(args.sweep, args.sweep_seed), "pastis_paps_sweep"
        patches = [(100 + k, int(t), k % 5 + 1, None) for k, t in enumerate([6, 4, 7, 5])]
        global EVAL_BATCHES, TRAIN_ORDER
        EVAL_BATCHES = [[100, 101], [102, 103]]
        TRAIN_ORDER = [EVAL_BATCHES[0], EVAL_BATCHES[1], EVAL_BATCHES[0]]
        seed = 1000 + args.sweep_seed
    else:
        cases, dataset, patches, seed = CASES, "pastis_paps", PATCHES, 9
    if args.only:
        cases = {k: v for k, v in cases.items() if k in args.only.split(",")}
    os.makedirs(args.out, exist_ok=True)
    folder = os.path.join(args.out, "datasets", dataset)
    write_dataset(folder, patches, seed)
    ds = orig.Dataset(folder, norm=True, target="instance", folds=None, reference_date=REF_DATE)
    mpath = os.path.join(args.out, "manifest.json")
    manifest = json.load(open(mpath)) if os.path.exists(mpath) else {"cases": {}}
    manifest["generated_by_paps"] = (f"tests/data/make_paps_cases.py (sitsgpu; the original utae-paps code, "
                                     f"PyTorch {torch.__version__}, numpy {np.__version__})")
    for name, case in cases.items():
        s = case["seed"]
        while True:
            try:
                r32 = run(orig, case, s, ds, torch.float32)
                r64 = run(orig, case, s, ds, torch.float64)
                why, noise = stable(r32, r64), None
                if why is None:
                    why, noise = spread(orig, case, s, ds, r32)
            except (IndexError, TypeError) as e:  # the original fails without any center or with one (§6.3)
                why = f"the original fails: {e}"
            if why is None:
                break
            print(f"{name}: seed {s} unstable ({why}), next")
            s += 1
            assert s < case["seed"] + 50, f"{name}: no stable seed"
        case = dict(case, seed=s)
        n_params = write_case(args.out, name, case, r32, r64, noise, dataset)
        geometry = one_px(r32)
        manifest["cases"][name] = {"kind": "panoptic", "seed": s, "n_params": n_params, "losses": r32["losses"],
                                   "train_box_geometry": geometry,
                                   "quality": {"ok": True, "seed": s, "float64_same_decisions": True}}
        print(name, n_params, "params, losses", r32["losses"], "terms step 1", r32["per_step"][0], geometry)
    with open(mpath, "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
