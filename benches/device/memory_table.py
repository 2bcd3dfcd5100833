"""The memory table of benches/README.md: for each model, the peak of one training step of sitsgpu
(`sitsgpu profile --train --json`: the buffer pool's live and held peaks) beside the original PyTorch code on the
same shapes (torch_memory.py, with and without the official dummy forward). On a machine without a GPU sitsgpu
runs on lavapipe and PyTorch on the CPU (its step's resident-memory growth); with CUDA, PyTorch's
max_memory_allocated / max_memory_reserved.

    python3 benches/device/memory_table.py --sitsgpu target/release/sitsgpu --utae-paps DIR [--ltae DIR2] \
        [--models utae,uconvlstm,convlstm,utae_paps@2x4x64,pse_ltae@128x24x64] [--batch 1] [--dates 6] \
        [--size 128] [--pixels 64] [--repeat 3]

Models: the semantic ones of get_model (utae, uconvlstm, buconvlstm, fpn, convlstm, convgru, unet3d; all but utae
and unet3d need --size 128), utae_paps (U-TAE + PaPs, train_panoptic.py's step; batch 2 or more) and the
pixel-set classifiers pse_ltae, pse_tae, pse_gru, pse_tempcnn (the L-TAE repository's train.py step; need --ltae,
a checkout of VSainteuf/lightweight-temporal-attention-pytorch). `model@BxTxS` gives one model its own batch, dates and size
(pixels per parcel for the pixel-set models). `--repeat N` runs each PyTorch configuration N times (the CPU figure is noisy)
and prints the range. Prints a markdown table (MiB). Not part of the Rust build."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
MIB = 1 << 20
NAMES = {"utae": "U-TAE", "uconvlstm": "U-ConvLSTM", "buconvlstm": "BU-ConvLSTM", "fpn": "FPN-ConvLSTM",
         "convlstm": "ConvLSTM", "convgru": "ConvGRU", "unet3d": "UNet3D", "utae_paps": "U-TAE + PaPs",
         "pse_ltae": "PSE + L-TAE", "pse_tae": "PSE + TAE", "pse_gru": "PSE + GRU", "pse_tempcnn": "PSE + TempCNN"}
PIXEL_SETS = {"pse_ltae", "pse_tae", "pse_gru", "pse_tempcnn"}
# No smart_forward dummy in the original: the "without" column would run the same code.
NO_DUMMY = PIXEL_SETS | {"unet3d", "convlstm", "convgru"}


def ours(binary, model, b, t, s):
    shape = ["--pixels", str(s)] if model in PIXEL_SETS else ["--size", str(s)]
    out = subprocess.run([binary, "profile", "--train", "--json", "--config", "paper", "--model", model,
                          "--batch_size", str(b), "--dates", str(t), *shape, "--warmup", "1", "--steps", "1"],
                         check=True, capture_output=True, text=True).stdout
    m = json.loads(out)["memory"]
    return m["peak_live_bytes"] / MIB, m["peak_held_bytes"] / MIB


def torch(a, model, b, t, s, no_dummy):
    cmd = [sys.executable, str(HERE / "torch_memory.py"), "--model", model, "--batch", str(b), "--dates", str(t)]
    if model in PIXEL_SETS:
        cmd += ["--ltae", a.ltae, "--pixels", str(s)]
    else:
        cmd += ["--utae-paps", a.utae_paps, "--size", str(s)] + (["--no-dummy"] if no_dummy else [])
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    if "peak_allocated_bytes" in r:
        return r["peak_allocated_bytes"] / MIB
    return (r["peak_rss_bytes"] - r["rss_before_step_bytes"]) / MIB


def torch_runs(a, model, b, t, s, no_dummy):
    """(lowest, highest) over --repeat runs."""
    v = [torch(a, model, b, t, s, no_dummy) for _ in range(a.repeat)]
    return min(v), max(v)


def fmt(r):
    lo, hi = r
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}–{hi:.0f}"


def ratio(ours_mib, r):
    """ours / PyTorch over the range of PyTorch's runs: "0.42×" or "0.40–0.44×"."""
    lo, hi = ours_mib / r[1], ours_mib / r[0]
    return f"{lo:.2f}×" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}–{hi:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sitsgpu", required=True)
    ap.add_argument("--utae-paps", help="checkout of VSainteuf/utae-paps (every model but the pse_* ones)")
    ap.add_argument("--ltae", help="checkout of VSainteuf/lightweight-temporal-attention-pytorch (pse_*)")
    ap.add_argument("--models", default="utae,uconvlstm,buconvlstm,convlstm,convgru,fpn,unet3d")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dates", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pixels", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    print("| model (paper config) | B, T, size | sitsgpu live | sitsgpu held | PyTorch | "
          "PyTorch without the dummy forward (— : the original has none) | live / PyTorch without (held) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for spec in a.models.split(","):
        model, _, shape = spec.partition("@")
        pix = model in PIXEL_SETS
        b, t, s = map(int, shape.split("x")) if shape else (a.batch, a.dates, a.pixels if pix else a.size)
        if pix and not a.ltae or not pix and not a.utae_paps:
            ap.error(f"{model} needs --{'ltae' if pix else 'utae-paps'}")
        live, held = ours(a.sitsgpu, model, b, t, s)
        t_dummy = torch_runs(a, model, b, t, s, False)
        t_plain = t_dummy if model in NO_DUMMY else torch_runs(a, model, b, t, s, True)
        shape_text = f"B {b}, T {t}, " + (f"S {s}" if pix else f"{s}²")
        print(f"| {NAMES.get(model, model)} | {shape_text} | {live:.0f} | {held:.0f} | {fmt(t_dummy)} | "
              f"{'—' if model in NO_DUMMY else fmt(t_plain)} | {ratio(live, t_plain)} ({ratio(held, t_plain)}) |",
              flush=True)


if __name__ == "__main__":
    main()
