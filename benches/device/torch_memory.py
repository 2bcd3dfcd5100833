"""Peak memory of one training step of the original PyTorch code, on the shapes `sitsgpu profile --train`
uses: the baseline of benches/README.md's memory table (issue: fit a consumer GPU).

One configuration per process (the CPU figure is the process's peak resident memory):

    python3 benches/device/torch_memory.py --utae-paps DIR --model utae --batch 1 --dates 12 --size 64 [--no-dummy]

DIR is a checkout of VSainteuf/utae-paps (none of its code is in this repository). The step is what
train_semantic.py does: forward, weighted cross-entropy, backward, Adam step, with the paper configuration
(get_model's defaults of train_semantic.py). `--no-dummy` removes the official `smart_forward`'s extra forward
of an all-zero batch in every shared encoder block (it only learns an output shape; no output changes): the
strongest baseline. On CUDA the figures are `torch.cuda.max_memory_allocated` / `max_memory_reserved`; on the
CPU the peak resident set (`ru_maxrss`) before and after the step, since lavapipe keeps sitsgpu's GPU buffers
in host memory and its resident memory is comparable. Prints one JSON line."""
import argparse
import json
import resource
import sys
from types import SimpleNamespace

import torch


def paper_config(model, num_classes=20):
    return SimpleNamespace(
        model=model, encoder_widths=[64, 64, 64, 128], decoder_widths=[32, 32, 64, 128],
        out_conv=[32, num_classes], str_conv_k=4, str_conv_s=2, str_conv_p=1, agg_mode="att_group",
        encoder_norm="group", n_head=16, d_model=256, d_k=4, pad_value=0, padding_mode="reflect",
        num_classes=num_classes,
    )


def remove_dummy_forward(utae):
    """smart_forward without the all-zero forward: the output shape comes from the real forward."""

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

    utae.TemporallySharedBlock.smart_forward = smart_forward


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--utae-paps", required=True)
    ap.add_argument("--model", default="utae")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dates", type=int, default=61)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--no-dummy", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    sys.path.insert(0, a.utae_paps)
    from src import model_utils
    from src.backbones import utae

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.no_dummy:
        remove_dummy_forward(utae)
    dev = torch.device(a.device)
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

    def step():
        opt.zero_grad()
        out = model(x, batch_positions=dates)
        loss = crit(out, y)
        loss.backward()
        opt.step()
        return loss.item()

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if dev.type == "cuda":
        step()  # warm-up (cuDNN workspaces, Adam state)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    step()
    out = {"model": a.model, "batch": b, "dates": t, "size": s, "dummy_forward": not a.no_dummy,
           "device": a.device, "torch": torch.__version__}
    if dev.type == "cuda":
        torch.cuda.synchronize()
        out.update(gpu=torch.cuda.get_device_name(0), peak_allocated_bytes=torch.cuda.max_memory_allocated(),
                   peak_reserved_bytes=torch.cuda.max_memory_reserved())
    else:
        out.update(rss_before_step_bytes=rss_before,
                   peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
