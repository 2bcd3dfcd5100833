"""PyTorch reference timings on the same GPU as a sitsgpu device run (benches/device/run.sh): the kernel
shapes of benches/ops.rs (matmul, conv2d forward / input gradient / weight gradient) in strict fp32 (TF32
off) and PyTorch's default, timed with CUDA events (median of 20 after 5 warm-ups). Prints one JSON line
per measurement. Not part of the Rust build; needs torch with CUDA."""
import json
import torch


def median_ms(fn, warm=5, reps=20):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def report(name, mode, flops, ms):
    print(json.dumps({"name": name, "mode": mode, "ms": ms, "gflops": flops / ms / 1e6}), flush=True)


def main():
    dev = torch.device("cuda")
    print(json.dumps({"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}), flush=True)
    for mode in ["strict", "default"]:
        strict = mode == "strict"
        torch.backends.cuda.matmul.allow_tf32 = not strict and torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = not strict
        for (name, m, k, n) in [("square 1024", 1024, 1024, 1024), ("square 2048", 2048, 2048, 2048),
                                ("ltae keys 40960x256x64", 40960, 256, 64),
                                ("pse mlp1 196608x32x64", 196608, 32, 64)]:
            a = torch.randn(m, k, device=dev)
            b = torch.randn(k, n, device=dev)
            report("matmul " + name, mode, 2 * m * n * k, median_ms(lambda: a @ b))
        frames = 16
        for (name, xs, ws, s, p) in [("in_conv 10->64 k3 128x128", (frames, 10, 128, 128), (64, 10, 3, 3), 1, 1),
                                     ("conv 64->64 k3 128x128", (frames, 64, 128, 128), (64, 64, 3, 3), 1, 1),
                                     ("conv 64->64 k3 64x64", (frames, 64, 64, 64), (64, 64, 3, 3), 1, 1),
                                     ("down 64->64 k4 s2 128x128", (frames, 64, 128, 128), (64, 64, 4, 4), 2, 1)]:
            x = torch.randn(*xs, device=dev, requires_grad=True)
            w = torch.randn(*ws, device=dev, requires_grad=True)
            conv = lambda: torch.nn.functional.conv2d(
                torch.nn.functional.pad(x, (p, p, p, p), mode="reflect"), w, stride=s)
            y = conv()
            flops = 2 * y.numel() * ws[1] * ws[2] * ws[3]
            report("conv2d forward " + name, mode, flops, median_ms(lambda: conv()))
            dy = torch.randn_like(y)
            gi = lambda: torch.autograd.grad(conv(), x, dy)[0]
            gw = lambda: torch.autograd.grad(conv(), w, dy)[0]
            # Each gradient timed with its forward; the forward's time is subtracted.
            fwd = median_ms(lambda: conv())
            report("conv2d backward input " + name, mode, flops, median_ms(gi) - fwd)
            report("conv2d backward weight " + name, mode, flops, median_ms(gw) - fwd)


if __name__ == "__main__":
    main()
