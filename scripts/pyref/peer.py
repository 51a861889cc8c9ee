"""The Hugging Face side of finetune's peer tests: transformers + PEFT on the CPU.

finetune never runs this; its tests do (internal/pyref), with the python of
scripts/install-pyref.sh. It reads one JSON file holding a list of jobs and
does each in turn, in one process, so torch is imported once:

  {"op": "logits", "gguf": MODEL, "adapter": PEFT_DIR or null,
   "tokens": [...], "out": FILE}
      the logits of every position, F32 little-endian [T][V], of the
      transformers model loaded from the GGUF file (F32), with the PEFT
      adapter applied when one is given.

  {"op": "train", "gguf": MODEL, "targets": [...], "r": 8, "alpha": 16,
   "lr": ..., "weight_decay": ..., "betas": [b1, b2], "eps": ...,
   "clip": ..., "steps": N, "schedule": "cosine"|"linear"|"constant",
   "windows": [{"tokens": [...], "weights": [...], "pos": [...], "seq": [...]}],
   "grad_accum": K, "seed": S, "init_out": DIR, "final_out": DIR,
   "losses_out": FILE, "autocast": "bf16"}
      PEFT's LoRA (its own initialisation: kaiming-uniform A, zero B) saved
      to init_out, then N steps of torch's AdamW with transformers' schedule
      and torch's gradient clipping, step k taking windows k*K .. k*K+K-1
      (mod the number of windows); the adapter after the last step goes to
      final_out and the loss, gradient norm and time of every step to
      losses_out (JSON); init_out and final_out may be left out. A packed
      window is run example by example (each example is the tokens of one
      seq value, at its own positions): exactly what the block-diagonal
      causal mask of the packed window computes. With "autocast": "bf16"
      the forward pass runs under torch.autocast("cpu", torch.bfloat16)
      (weights, LoRA and optimizer stay fp32; the loss is taken in fp32).

  {"op": "chat", "gguf": MODEL, "conversations": [[{"role":..., "content":...}]],
   "out": FILE}
      for each conversation the tokens of tokenizer.apply_chat_template
      (tokenize, no generation prompt), the same with the generation prompt
      for all but the last turn, and TRL's assistant-only mask
      (return_assistant_tokens_mask) where the template marks assistant
      turns with {% generation %}; JSON.

Usage: python peer.py JOBS.json
"""

import contextlib
import json
import os
import sys
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.manual_seed(0)


def load_model(gguf):
    from transformers import AutoConfig, AutoModelForCausalLM

    d, f = os.path.split(os.path.abspath(gguf))
    cfg = AutoConfig.from_pretrained(d, gguf_file=f)
    # llama.cpp writes "no padding token" as -1 (0xFFFFFFFF); torch's
    # Embedding refuses a padding index outside the vocabulary. The padding
    # index plays no part in a forward pass.
    if cfg.pad_token_id is not None and not 0 <= cfg.pad_token_id < cfg.vocab_size:
        cfg.pad_token_id = None
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, config=cfg, dtype=torch.float32)
    m.eval()
    return m


def job_logits(j):
    from peft import PeftModel

    model = load_model(j["gguf"])
    if j.get("adapter"):
        model = PeftModel.from_pretrained(model, j["adapter"])
        model.eval()
    ids = torch.tensor([j["tokens"]], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].to(torch.float32).contiguous()
    with open(j["out"], "wb") as f:
        f.write(logits.numpy().astype("<f4").tobytes())


def segments(w):
    """The examples of a packed window: (tokens, positions, target mask) of
    each run of equal non-negative seq values."""
    out, i, n = [], 0, len(w["tokens"])
    while i < n:
        s = w["seq"][i]
        k = i
        while k < n and w["seq"][k] == s:
            k += 1
        if s >= 0 and k - i >= 2:
            toks = w["tokens"][i:k]
            pos = w["pos"][i:k]
            # token t is a target, predicted from t-1, when its weight > 0
            tgt = [w["weights"][t] > 0 for t in range(i + 1, k)]
            out.append((toks, pos, tgt))
        i = k
    return out


def job_train(j):
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    torch.manual_seed(j.get("seed", 0))
    model = load_model(j["gguf"])
    cfg = LoraConfig(r=j["r"], lora_alpha=j["alpha"], target_modules=j["targets"],
                     lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    model.train()
    if j.get("init_out"):
        model.save_pretrained(j["init_out"])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=j["lr"], betas=tuple(j["betas"]), eps=j["eps"],
                            weight_decay=j["weight_decay"])
    sched = get_scheduler(j["schedule"], opt, num_warmup_steps=j.get("warmup", 0),
                          num_training_steps=j["steps"])
    windows = j["windows"]
    K = j["grad_accum"]
    autocast = j.get("autocast") or ""
    if autocast not in ("", "bf16"):
        raise ValueError(f"autocast {autocast!r}: only bf16")

    def forward_ctx():
        if autocast == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    losses, norms, times, tokens, start = [], [], [], 0, time.time()
    for step in range(j["steps"]):
        t0 = time.perf_counter()
        ws = [windows[(step * K + k) % len(windows)] for k in range(K)]
        segs = [s for w in ws for s in segments(w)]
        n_targets = sum(sum(t) for _, _, t in segs)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for toks, pos, tgt in segs:
            ids = torch.tensor([toks])
            with forward_ctx():
                logits = model(input_ids=ids, position_ids=torch.tensor([pos])).logits[0, :-1]
            mask = torch.tensor(tgt)
            ce = torch.nn.functional.cross_entropy(logits[mask].float(), ids[0, 1:][mask], reduction="sum")
            (ce / n_targets).backward()
            total += ce.item()
        tokens += sum(len(w["tokens"]) for w in ws)
        if j["clip"] > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, j["clip"])
        else:
            norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
        opt.step()
        sched.step()
        losses.append(total / n_targets)
        norms.append(float(norm))
        times.append(time.perf_counter() - t0)
    elapsed = time.time() - start
    if j.get("final_out"):
        model.save_pretrained(j["final_out"])
    with open(j["losses_out"], "w") as f:
        json.dump({"loss": losses, "grad_norm": norms, "step_seconds": times, "tokens": tokens, "seconds": elapsed}, f)


def job_chat(j):
    from transformers import AutoTokenizer

    d, f = os.path.split(os.path.abspath(j["gguf"]))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    out = []
    for conv in j["conversations"]:
        r = {"tokens": list(tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"])}
        if conv and conv[-1]["role"] == "assistant":
            r["prompt"] = list(tok.apply_chat_template(conv[:-1], tokenize=True, add_generation_prompt=True,
                                                      return_dict=True)["input_ids"])
        try:
            m = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
            if any(m["assistant_masks"]):
                r["assistant_mask"] = list(m["assistant_masks"])
        except Exception as e:  # a template without {% generation %}
            r["assistant_mask_error"] = str(e)
        r["text"] = tok.apply_chat_template(conv, tokenize=False)
        out.append(r)
    with open(j["out"], "w") as f:
        json.dump(out, f)


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    torch.set_num_threads(int(os.environ.get("FINETUNE_PYREF_THREADS", "1")))
    for j in jobs:
        {"logits": job_logits, "train": job_train, "chat": job_chat}[j["op"]](j)


if __name__ == "__main__":
    main()
