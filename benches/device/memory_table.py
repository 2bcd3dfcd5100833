"""The memory table of benches/README.md: for each model, the peak of one training step of sitsgpu
(`sitsgpu profile --train --json`: the buffer pool's live and held peaks) beside the original PyTorch code on the
same shapes (torch_memory.py, with and without the official dummy forward). On a machine without a GPU sitsgpu
runs on lavapipe and PyTorch on the CPU (its step's resident-memory growth); with CUDA, PyTorch's
max_memory_allocated / max_memory_reserved.

    python3 benches/device/memory_table.py --sitsgpu target/release/sitsgpu --utae-paps DIR \
        [--models utae,uconvlstm,convlstm] [--batch 1] [--dates 6] [--size 128]

Prints a markdown table (MiB). Not part of the Rust build."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
MIB = 1 << 20


def ours(binary, model, b, t, s):
    out = subprocess.run([binary, "profile", "--train", "--json", "--config", "paper", "--model", model,
                          "--batch_size", str(b), "--dates", str(t), "--size", str(s), "--warmup", "1",
                          "--steps", "1"], check=True, capture_output=True, text=True).stdout
    m = json.loads(out)["memory"]
    return m["peak_live_bytes"] / MIB, m["peak_held_bytes"] / MIB


def torch(utae_paps, model, b, t, s, no_dummy):
    cmd = [sys.executable, str(HERE / "torch_memory.py"), "--utae-paps", utae_paps, "--model", model,
           "--batch", str(b), "--dates", str(t), "--size", str(s)] + (["--no-dummy"] if no_dummy else [])
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    if "peak_allocated_bytes" in r:
        return r["peak_allocated_bytes"] / MIB, r["peak_reserved_bytes"] / MIB
    grown = (r["peak_rss_bytes"] - r["rss_before_step_bytes"]) / MIB
    return grown, grown


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sitsgpu", required=True)
    ap.add_argument("--utae-paps", required=True)
    ap.add_argument("--models", default="utae,uconvlstm,buconvlstm,convlstm,convgru,fpn,unet3d")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--dates", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    a = ap.parse_args()
    print(f"| model (paper config, B {a.batch}, T {a.dates}, {a.size}²) | sitsgpu live | sitsgpu held | "
          "PyTorch | PyTorch without the dummy forward | live / PyTorch without |")
    print("| --- | --- | --- | --- | --- | --- |")
    for model in a.models.split(","):
        live, held = ours(a.sitsgpu, model, a.batch, a.dates, a.size)
        t_dummy, _ = torch(a.utae_paps, model, a.batch, a.dates, a.size, False)
        t_plain, _ = torch(a.utae_paps, model, a.batch, a.dates, a.size, True)
        print(f"| {model} | {live:.0f} | {held:.0f} | {t_dummy:.0f} | {t_plain:.0f} | {live / t_plain:.2f}× |",
              flush=True)


if __name__ == "__main__":
    main()
