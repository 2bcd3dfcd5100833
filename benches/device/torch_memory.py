"""Peak memory of one training step of the original PyTorch code, on the shapes `sitsgpu profile --train`
uses: the baseline of benches/README.md's memory table (issue: fit a consumer GPU).

One configuration per process (the CPU figure is the process's peak resident memory):

    python3 benches/device/torch_memory.py --utae-paps DIR --model utae --batch 1 --dates 12 --size 64 [--no-dummy]
    python3 benches/device/torch_memory.py --utae-paps DIR --model utae_paps --batch 2 --dates 4 --size 64
    python3 benches/device/torch_memory.py --ltae DIR2 --model pse_ltae --batch 128 --dates 24 --pixels 64
    (also --model pse_tae, pse_gru, pse_tempcnn)

DIR is a checkout of VSainteuf/utae-paps, DIR2 one of VSainteuf/lightweight-temporal-attention-pytorch (none of
their code is in this repository).

* Semantic models (utae and the baselines of get_model: uconvlstm, buconvlstm, fpn, convlstm, convgru, unet3d;
  all but utae and unet3d fix their input at 128 × 128): the step of train_semantic.py — forward, weighted
  cross-entropy, backward, Adam step — with the paper configuration (get_model's defaults of train_semantic.py).
* `utae_paps`: the training step of train_panoptic.py after its warm-up epochs: U-TAE (encoder=True) + PaPs with
  train_panoptic.py's defaults (shape_size 16, mask_conv, `weight_init` applied), centers by supmax (the zones,
  target channel 2, passed to the model), PaPsLoss (all weights 1, beta 4, void 19, heatmap_only False),
  backward, Adam lr 0.01. The target is sitsgpu's synthetic one (`profile::workload::synthetic_parcels`): the
  patch cut into 8 × 8 blocks, three in four a parcel with a Gaussian centerness peak (σ 2) at its middle, the
  fourth background (instance, zone and class 0). The pseudo-NMS is off (`pseudo_nms=False`), as in sitsgpu's
  training step; train_panoptic.py runs it on training batches too, for the train metrics, unless
  --val_metrics_only (`--pseudo-nms` turns it on here). The original squeezes the
  batch axis of the center mask, so a batch of 1 fails: use --batch 2 or more.
  PaPs imports `torch_scatter.scatter_max` (only its argmax indices are used). When torch_scatter is not
  installed, this script installs a minimal pure-torch stand-in (`scatter_max` below: max per index, the lowest
  position among ties, empty slots given the index len(src), as torch_scatter does); it is not the original
  package, and a `torch_scatter` folder inside DIR is not used.
* `pse_ltae`: the step of the L-TAE repository's train.py: PseLTae with its defaults (mlp1 [10, 32, 64],
  mean_std pooling, mlp2 [132, 128], 4 extra features, n_head 16, d_k 8, d_model 256, mlp3 [256, 128],
  len_max_seq = --dates, bespoke positions every 14 days as sitsgpu's profile uses, mlp4 [128, 64, 32, 20]),
  `weight_init`, focal loss γ 1, Adam with PyTorch defaults; inputs (B, T, 10, S) pixels, an all-ones mask
  (B, T, S) and extra features (B, T, 4). No dummy forward exists there (`--no-dummy` changes nothing).
* `pse_tae`, `pse_gru`, `pse_tempcnn`: the same step with the repository's other classifiers at their class
  defaults, as sitsgpu's profile builds them: PseTae(len_max_seq = --dates, positions every 14 days), PseGru(),
  PseTempCNN(seq_len = --dates).

`--no-dummy` removes the official `smart_forward`'s extra forward of an all-zero batch in every temporally
shared block (U-TAE's and U-ConvLSTM's encoders, FPN-ConvLSTM's input convolutions and pyramid; ConvLSTM,
ConvGRU and UNet3D have none): it only learns an output shape, no output changes; the strongest baseline. On
CUDA the figures are `torch.cuda.max_memory_allocated` / `max_memory_reserved`; on the CPU the peak resident
set (`ru_maxrss`) before and after the step, since lavapipe keeps sitsgpu's GPU buffers in host memory and its
resident memory is comparable. Prints one JSON line.

Speed (issue: faster than PyTorch at its best): `--strict` turns TF32 off (PyTorch's strict float32),
`--amp fp16|bf16` runs the step under `torch.autocast` (float16 with GradScaler, PyTorch's AMP recipe), and
`--time N` adds the median wall time of N more steps (CUDA events, each step synchronised)."""
import argparse
import json
import resource
import sys
from types import SimpleNamespace

import time

import torch


def train_step(a, dev, model_loss, opt):
    """One optimiser step: forward + loss (`model_loss()`) under autocast when --amp asks (float16 with
    GradScaler, as PyTorch's AMP recipe; bfloat16 without), backward, Adam. Returns the loss (a readback,
    as the original training loops read it every step)."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(a.amp)
    scaler = torch.amp.GradScaler(dev.type) if a.amp == "fp16" else None

    def step():
        opt.zero_grad()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            loss = model_loss()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss.item()

    return step


def median_step_ms(step, dev, n):
    """Median wall time of `n` steps, each synchronised (CUDA events on a GPU)."""
    times = []
    for _ in range(n):
        if dev.type == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            step()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2]


def paper_config(model, num_classes=20):
    return SimpleNamespace(
        model=model, encoder_widths=[64, 64, 64, 128], decoder_widths=[32, 32, 64, 128],
        out_conv=[32, num_classes], str_conv_k=4, str_conv_s=2, str_conv_p=1, agg_mode="att_group",
        encoder_norm="group", n_head=16, d_model=256, d_k=4, pad_value=0, padding_mode="reflect",
        num_classes=num_classes,
    )


def remove_dummy_forward(*modules):
    """smart_forward without the all-zero forward: the output shape comes from the real forward. utae.py and
    fpn.py each define a TemporallySharedBlock with the same smart_forward; both are replaced."""

    def smart_forward(self, input):
        if len(input.shape) == 4:
            return self.forward(input)
        b, t, c, h, w = input.shape
        out = input.view(b * t, c, h, w)
        if self.pad_value is not None:
            pad_mask = (out == self.pad_value).all(dim=-1).all(dim=-1).all(dim=-1)
            if pad_mask.any():
                real = self.forward(out[~pad_mask])
                temp = torch.ones((b * t,) + real.shape[1:], device=input.device) * self.pad_value
                temp[~pad_mask] = real
                out = temp
            else:
                out = self.forward(out)
        else:
            out = self.forward(out)
        _, c, h, w = out.shape
        return out.view(b, t, c, h, w)

    for m in modules:
        m.TemporallySharedBlock.smart_forward = smart_forward


def scatter_max(src, index, dim=-1, out=None, dim_size=None, fill_value=None):
    """Stand-in for torch_scatter.scatter_max on the 1-D case PaPs' CenterExtractor uses (see the docstring):
    (max per index, argmax per index), ties to the lowest position, empty slots 0 and len(src)."""
    assert src.dim() == 1 and index.dim() == 1
    with torch.no_grad():
        n = src.shape[0]
        size = int(index.max()) + 1 if dim_size is None else dim_size
        best = torch.full((size,), float("-inf"), dtype=src.dtype, device=src.device)
        best = best.scatter_reduce(0, index, src, "amax")
        pos = torch.arange(n, device=src.device)
        cand = torch.where(src == best[index], pos, torch.full_like(pos, n))
        arg = torch.full((size,), n, dtype=torch.long, device=src.device).scatter_reduce(0, index, cand, "amin")
        best[arg == n] = 0
    return best, arg


def install_scatter_shim():
    try:
        import torch_scatter  # noqa: F401  (the real package wins)
        return False
    except ImportError:
        import types
        mod = types.ModuleType("torch_scatter")
        mod.scatter_max = scatter_max
        sys.modules["torch_scatter"] = mod
        return True


def synthetic_parcels(b, h, w, seed=3):
    """sitsgpu's synthetic instance target (B, H, W, 7), as `profile::workload::synthetic_parcels` builds it:
    8 × 8 blocks, three in four a parcel (instance = zone = block index + 1, a class in 1..18, heatmap
    exp(-d²/8) around the block's middle, exactly 1 there), the fourth background (all 0); channels heatmap,
    instance, zone, rows and columns of the zone's instance, its class, pixel class. The classes come from
    torch's generator, not sitsgpu's (the memory does not depend on them)."""
    g = torch.Generator().manual_seed(seed)
    bh, bw = -(-h // 8), -(-w // 8)
    ys = torch.arange(h).view(h, 1).expand(h, w)
    xs = torch.arange(w).view(1, w).expand(h, w)
    k = (ys // 8) * bw + xs // 8
    out = torch.zeros(b, h, w, 7)
    for i in range(b):
        blocks = torch.arange(bh * bw)
        parcel = torch.where(blocks % 4 != 3, blocks + 1, torch.zeros_like(blocks))
        cls = torch.where(parcel != 0, torch.randint(1, 19, (bh * bw,), generator=g), torch.zeros_like(blocks))
        inst = parcel[k]
        cy = (ys // 8 * 8 + 4).clamp(max=h - 1)
        cx = (xs // 8 * 8 + 4).clamp(max=w - 1)
        heat = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2).double() / 8.0) * (inst != 0)
        rows = torch.zeros(bh * bw)
        cols = torch.zeros(bh * bw)
        for j in range(bh * bw):
            if parcel[j] != 0:
                m = inst == parcel[j]
                rows[j] = m.any(1).sum()
                cols[j] = m.any(0).sum()
        out[i, ..., 0] = heat.float()
        out[i, ..., 1] = inst.float()
        out[i, ..., 2] = inst.float()
        out[i, ..., 3] = rows[k]
        out[i, ..., 4] = cols[k]
        out[i, ..., 5] = cls[k].float()
        out[i, ..., 6] = cls[k].float()
    return out


def semantic_step(a, dev):
    install_scatter_shim()  # model_utils imports PaPs, which imports torch_scatter (unused by these models)
    sys.path.insert(0, a.utae_paps)
    from src import model_utils
    from src.backbones import fpn, utae

    if a.no_dummy:
        remove_dummy_forward(utae, fpn)
    torch.manual_seed(0)
    model = model_utils.get_model(paper_config(a.model)).to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    weights = torch.ones(20, device=dev)
    weights[19] = 0
    crit = torch.nn.CrossEntropyLoss(weight=weights)
    b, t, s = a.batch, a.dates, a.size
    x = torch.randn(b, t, 10, s, s, device=dev)
    dates = torch.arange(t, device=dev).float().repeat(b, 1) * 5
    y = torch.randint(0, 20, (b, s, s), device=dev)

    return train_step(a, dev, lambda: crit(model(x, batch_positions=dates), y), opt)


def panoptic_step(a, dev):
    shim = install_scatter_shim()
    sys.path.insert(0, a.utae_paps)
    from src import model_utils
    from src.backbones import utae
    from src.learning.weight_init import weight_init
    from src.panoptic.paps_loss import PaPsLoss

    if a.batch < 2:
        raise SystemExit("utae_paps: the original squeezes the batch axis of the center mask; use --batch 2 or more")
    if a.no_dummy:
        remove_dummy_forward(utae)
    torch.manual_seed(0)
    config = paper_config("utae")
    config.__dict__.update(backbone="utae", shape_size=16, mask_conv=True, min_confidence=0.2, min_remain=0.5,
                           mask_threshold=0.4)
    model = model_utils.get_model(config, mode="panoptic").to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.apply(weight_init)
    model.train()
    crit = PaPsLoss(l_center=1, l_size=1, l_shape=1, l_class=1, beta=4, void_label=19)
    b, t, s = a.batch, a.dates, a.size
    x = torch.randn(b, t, 10, s, s, device=dev)
    dates = torch.arange(t, device=dev).float().repeat(b, 1) * 7
    y = synthetic_parcels(b, s, s).to(dev)

    def model_loss():
        pred = model(x, batch_positions=dates, pseudo_nms=a.pseudo_nms, zones=y[:, :, :, 2], heatmap_only=False)
        return crit(pred, y, heatmap_only=False)

    return train_step(a, dev, model_loss, opt), {"scatter_max": "script stand-in" if shim else "torch_scatter", "pseudo_nms": a.pseudo_nms}


PIXEL_SETS = {"pse_ltae", "pse_tae", "pse_gru", "pse_tempcnn"}


def pixel_set_step(a, dev):
    sys.path.insert(0, a.ltae)
    from learning.focal_loss import FocalLoss
    from learning.weight_init import weight_init
    from models import stclassifier

    torch.manual_seed(0)
    b, t, s = a.batch, a.dates, a.pixels
    positions = [14 * i for i in range(t)]
    if a.model == "pse_ltae":
        model = stclassifier.PseLTae(input_dim=10, mlp1=[10, 32, 64], pooling="mean_std", mlp2=[132, 128],
                                     with_extra=True, extra_size=4, n_head=16, d_k=8, d_model=256, mlp3=[256, 128],
                                     dropout=0.2, T=1000, len_max_seq=t, positions=positions,
                                     mlp4=[128, 64, 32, 20])
    elif a.model == "pse_tae":
        model = stclassifier.PseTae(len_max_seq=t, positions=positions)
    elif a.model == "pse_gru":
        model = stclassifier.PseGru()
    else:
        model = stclassifier.PseTempCNN(seq_len=t)
    model = model.to(dev)
    model.apply(weight_init)
    model.train()
    opt = torch.optim.Adam(model.parameters())
    crit = FocalLoss(1)
    x = torch.rand(b, t, 10, s, device=dev) * 2 - 1
    mask = torch.ones(b, t, s, device=dev)
    extra = torch.rand(b, t, 4, device=dev) * 2 - 1
    y = torch.arange(b, device=dev) % 20

    return train_step(a, dev, lambda: crit(model(((x, mask), extra)), y.long()), opt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--utae-paps", help="checkout of VSainteuf/utae-paps (semantic models, utae_paps)")
    ap.add_argument("--ltae", help="checkout of VSainteuf/lightweight-temporal-attention-pytorch (pse_*)")
    ap.add_argument("--model", default="utae")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dates", type=int, default=61)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pixels", type=int, default=64)
    ap.add_argument("--no-dummy", action="store_true")
    ap.add_argument("--pseudo-nms", action="store_true", help="utae_paps: run the pseudo-NMS in the step")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--amp", choices=["off", "fp16", "bf16"], default="off",
                    help="automatic mixed precision: torch.autocast in float16 (with GradScaler) or bfloat16")
    ap.add_argument("--strict", action="store_true",
                    help="TF32 off for convolutions and matmuls (PyTorch's default has it on for cuDNN)")
    ap.add_argument("--time", type=int, default=0, help="also report the median time of this many steps")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.strict:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(a.device)
    extra = {}
    if a.model in PIXEL_SETS:
        if not a.ltae:
            ap.error(f"{a.model} needs --ltae")
        step = pixel_set_step(a, dev)
    elif not a.utae_paps:
        ap.error(f"{a.model} needs --utae-paps")
    elif a.model == "utae_paps":
        step, extra = panoptic_step(a, dev)
    else:
        step = semantic_step(a, dev)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if dev.type == "cuda":
        step()  # warm-up (cuDNN workspaces, Adam state)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    loss = step()
    out = {"model": a.model, "batch": a.batch, "dates": a.dates,
           "dummy_forward": not a.no_dummy and a.model not in PIXEL_SETS, "device": a.device,
           "torch": torch.__version__, "loss": loss, "amp": a.amp, "strict": a.strict, **extra}
    if a.model in PIXEL_SETS:
        out["pixels"] = a.pixels
    else:
        out["size"] = a.size
    if dev.type == "cuda":
        torch.cuda.synchronize()
        out.update(gpu=torch.cuda.get_device_name(0), peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                   peak_reserved_bytes=torch.cuda.max_memory_reserved())
    else:
        out.update(rss_before_step_bytes=rss_before,
                   peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if a.time:
        out["step_ms_median"] = median_step_ms(step, dev, a.time)
        out["timed_steps"] = a.time
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
