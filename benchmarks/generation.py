"""Generation throughput of the synthetic-data technique: batched sampling with a KV cache against
one sequence at a time, the same model, prompts and number of new tokens, measured in one run.

    python benchmarks/generation.py                                  # CPU, the small config's model
    python benchmarks/generation.py --config configs/synthetic/gpu.yaml --device cuda --batch 128

The model is freshly initialised (throughput does not depend on the weights) and EOS is disabled,
so every sequence generates exactly --new tokens. Prints tokens/s and the generation FLOP/s
(accounting layer's `generation_flops`) of each way, and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main() -> None:
    from efflab.accounting.flops import generation_flops
    from efflab.config import load_config
    from efflab.models import build_model
    from efflab.techniques.synthetic import generate_batch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs/synthetic/small.yaml"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32, help="sequences generated together")
    ap.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    ap.add_argument("--new", type=int, default=64, help="new tokens per sequence")
    ap.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (1 = plain sampling)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--bf16", action="store_true", help="autocast to bf16 (GPU)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    cfg = load_config(a.config, a.overrides, recipe="synthetic")
    torch.manual_seed(0)
    model = build_model(cfg, cfg.data.vocab_size).to(device).eval()
    prompts = torch.randint(0, cfg.data.vocab_size, (a.batch, a.prompt)).tolist()
    kw = {"max_new_tokens": a.new, "stop_at_eos": False, "top_p": a.top_p}

    def autocast():
        return (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if a.bf16
            else torch.autocast(device.type, enabled=False)
        )

    def batched():
        generate_batch(
            model, prompts, generator=torch.Generator(device).manual_seed(0), autocast=autocast, **kw
        )

    def one_at_a_time():
        g = torch.Generator(device).manual_seed(0)
        for p in prompts:
            generate_batch(model, [p], generator=g, autocast=autocast, **kw)

    generate_batch(model, prompts[:2], max_new_tokens=4, stop_at_eos=False, autocast=autocast)  # warm-up
    tokens = a.batch * a.new
    flops = generation_flops(model.config, a.prompt, a.new, n_seqs=a.batch)
    t_batch = timed(batched, device)
    t_single = timed(one_at_a_time, device)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {n_params:,} params ({a.config}), device {device}, {torch.get_num_threads()} threads, "
        f"{'bf16' if a.bf16 else 'fp32'}"
    )
    print(
        f"{a.batch} sequences x {a.new} new tokens after a {a.prompt}-token prompt = {tokens:,} tokens, "
        f"{flops:.4g} generation FLOPs (accounting layer), top_p {a.top_p}"
    )
    for name, t in ((f"batched, {a.batch} at once", t_batch), ("one sequence at a time", t_single)):
        print(f"  {name:<24} {tokens / t:10,.0f} tokens/s  {flops / t:.3g} FLOP/s  ({t:.2f} s)")
    print(f"  {'batched / one at a time':<24} {t_single / t_batch:10.2f}x")


if __name__ == "__main__":
    main()
