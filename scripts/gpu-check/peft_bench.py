"""PyTorch + PEFT on the GPU check's shapes, the reference for finetune's
GPU throughput: LoRA r16 (alpha 32) on the seven projections of a Llama of
the given shape with random bf16 weights, AdamW, one window of --ctx tokens
per optimizer step (the same tokens per step as `bench-train`), gradient
checkpointing off. Prints one JSON line per shape: tokens/s (median of the
measured steps) and peak GPU memory (torch.cuda.max_memory_allocated).

Needs torch with CUDA, transformers and peft (the GPU machine has them).
"""

import argparse
import json
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    # SmolLM2-135M and Llama-3.2-1B, as lora/internal/benchtrain names them.
    "135M": dict(num_hidden_layers=30, hidden_size=576, num_attention_heads=9, num_key_value_heads=3,
                 intermediate_size=1536, vocab_size=49152, tie_word_embeddings=True),
    "1B": dict(num_hidden_layers=16, hidden_size=2048, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True),
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def bench(name, ctx, steps, warmup):
    torch.manual_seed(0)
    cfg = LlamaConfig(max_position_embeddings=max(2048, ctx), rms_norm_eps=1e-5, **SHAPES[name])
    model = LlamaForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, cfg.vocab_size, (1, ctx), device="cuda")
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {"shape": f"{name} bf16 ctx {ctx} r16", "tokens_per_s": ctx / step, "step_s": step,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20, "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="135M,1B")
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    for name in a.shapes.split(","):
        print(json.dumps(bench(name, a.ctx, a.steps, a.warmup)), flush=True)


if __name__ == "__main__":
    main()
