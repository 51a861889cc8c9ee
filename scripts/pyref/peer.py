"""The Hugging Face side of finetune's peer tests: transformers + PEFT (+ TRL) on the CPU.

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
   "mask_template": TEMPLATE or null, "out": FILE}
      for each conversation the tokens of tokenizer.apply_chat_template
      (tokenize, no generation prompt), the same with the generation prompt
      for all but the last turn, and TRL's assistant-only mask
      (return_assistant_tokens_mask) where the template marks assistant
      turns with {% generation %}; JSON. A model's own template rarely
      carries the markers: mask_template is then the same template with
      them added, used for the mask alone, and its tokens go out beside
      the mask ("mask_tokens") so the caller can check they are the
      template's own. The tokenizer is transformers' from the GGUF, with
      the pre-tokenizer of the model's own tokenizer.json where
      transformers does not know the GGUF's tokenizer.ggml.pre (see
      PRE_TOKENIZERS); each conversation's "tokens_as_loaded" is then its
      tokens under the pre-tokenizer transformers loaded.

  {"op": "dpo", "gguf": MODEL, "targets": [...], "r": 8, "alpha": 16,
   "lr": ..., "weight_decay": ..., "betas": [b1, b2], "eps": ..., "clip": ...,
   "steps": N, "schedule": ..., "warmup": W, "beta": ..., "rpo_alpha": A,
   "init_b_std": S, "pairs": [{"prompt": [...], "chosen": [...], "rejected": [...]}],
   "order": [...], "grad_accum": K, "seed": S,
   "init_out": DIR, "final_out": DIR, "losses_out": FILE}
      N steps of TRL's DPOTrainer (sigmoid loss; with rpo_alpha > 0 also
      its "sft" loss with that weight: RPO) on PEFT's LoRA, in F32 on the
      CPU: the pairs are token ids (prompt, then each answer) and are read
      in the order given (pairs[order[0]], pairs[order[1]], ...), one a
      micro-batch and K a step. With init_b_std B starts random (a
      reference adapter, DPO after SFT), else PEFT's own initialisation (B
      zero, the base as reference). The starting adapter goes to init_out,
      the last to final_out, and the loss, gradient norm and rewards the
      trainer logs at every step to losses_out (JSON).

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
    import functools

    import gguf as gguf_py
    from transformers import AutoConfig, AutoModelForCausalLM

    # transformers asks gguf for the same tensor name map once per module
    # of the model, and gguf builds it anew each time: for SmolLM2's 30
    # layers that took half of the loading time. The map depends only on
    # its arguments; keep the first one.
    if not hasattr(gguf_py.get_tensor_name_map, "cache_info"):
        gguf_py.get_tensor_name_map = functools.lru_cache(maxsize=None)(gguf_py.get_tensor_name_map)
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


def _smollm_pre_tokenizer():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])


# The pre-tokenizers of models' own tokenizer.json, by the GGUF's
# tokenizer.ggml.pre, for the names transformers' GGUF loader does not map
# (it then splits as GPT-2 does). SmolLM's (StarCoder's) isolates every
# digit before GPT-2's split, as llama.cpp's "smollm" does: without it a
# digit after a line break is split differently ("?\n\n9." is "\n\n", "9"
# for SmolLM2 and llama.cpp, "\n", "\n", "9" for transformers' loader).
PRE_TOKENIZERS = {"smollm": _smollm_pre_tokenizer}


def gguf_string(path, key):
    import gguf

    field = gguf.GGUFReader(path).fields.get(key)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode()


def load_tokenizer(path):
    """transformers' tokenizer of the GGUF, and the pre-tokenizer it loaded
    when PRE_TOKENIZERS replaced it (else None)."""
    from transformers import AutoTokenizer
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    d, f = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    pre = gguf_string(path, "tokenizer.ggml.pre")
    if pre in PRE_TOKENIZERS and pre not in GGUF_PRE_TOKENIZER_SPLITS:
        loaded = tok.backend_tokenizer.pre_tokenizer
        tok.backend_tokenizer.pre_tokenizer = PRE_TOKENIZERS[pre]()
        return tok, loaded
    return tok, None


def ids_tokenizer(path):
    """A tokenizer that only knows the GGUF's vocabulary and its BOS and EOS
    tokens: all a trainer fed token ids asks of one (TRL pads with EOS when
    there is no padding token). transformers' GGUF loader refuses some
    files (stories260K's padding id is -1)."""
    import gguf
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.ggml.tokens"]
    toks = [bytes(f.parts[i]).decode() for i in f.data]

    def special(key):
        fl = r.fields.get(key)
        return toks[int(fl.parts[fl.data[0]][0])] if fl is not None else None

    vocab = {t: i for i, t in enumerate(toks)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token=toks[0])),
                                   bos_token=special("tokenizer.ggml.bos_token_id"),
                                   eos_token=special("tokenizer.ggml.eos_token_id"), unk_token=toks[0])


def job_chat(j):
    tok, loaded = load_tokenizer(j["gguf"])
    out = []
    for conv in j["conversations"]:
        r = {"tokens": list(tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"])}
        if loaded is not None:
            fixed, tok.backend_tokenizer.pre_tokenizer = tok.backend_tokenizer.pre_tokenizer, loaded
            r["tokens_as_loaded"] = list(tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"])
            tok.backend_tokenizer.pre_tokenizer = fixed
        if conv and conv[-1]["role"] == "assistant":
            r["prompt"] = list(tok.apply_chat_template(conv[:-1], tokenize=True, add_generation_prompt=True,
                                                      return_dict=True)["input_ids"])
        try:
            m = tok.apply_chat_template(conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                        chat_template=j.get("mask_template"))
            if any(m["assistant_masks"]):
                r["assistant_mask"] = list(m["assistant_masks"])
                r["mask_tokens"] = list(m["input_ids"])
        except Exception as e:  # a template without {% generation %}
            r["assistant_mask_error"] = str(e)
        r["text"] = tok.apply_chat_template(conv, tokenize=False)
        out.append(r)
    with open(j["out"], "w") as f:
        json.dump(out, f)


def job_dpo(j):
    """TRL's DPOTrainer with PEFT's LoRA: the sigmoid loss (plus, with
    rpo_alpha, TRL's "sft" loss with that weight: RPO), the reference from
    PEFT (adapter disabled when B starts at zero; else the copy of the
    starting adapter TRL keeps as "ref"), transformers' Trainer with torch's
    AdamW, clipping and schedule, one pair a micro-batch and grad_accum of
    them a step, the pairs read in the order given."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class PreTokenized(DPOTrainer):
        # The pairs come as token ids (prompt_ids, chosen_ids,
        # rejected_ids), what DPOTrainer's own preparation makes of text
        # and its collator reads; its text steps (prompt extraction, EOS,
        # tokenization) have nothing to do.
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    class Record(TrainerCallback):
        def __init__(self):
            self.logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and "rewards/chosen" in logs:
                self.logs.append(dict(logs))

    torch.manual_seed(j.get("seed", 0))
    model = load_model(j["gguf"])
    # transformers marks a model loaded from GGUF as quantized by "gguf",
    # and its Trainer refuses to train such a model; load_model dequantized
    # it to dense F32 tensors, which train as any others: drop the mark as
    # transformers does for a dequantized model.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tok = ids_tokenizer(j["gguf"])
    lcfg = LoraConfig(r=j["r"], lora_alpha=j["alpha"], target_modules=j["targets"],
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    peft_config = lcfg
    if j.get("init_b_std"):
        # A reference adapter that is not the base (DPO after SFT): the
        # trainer gets the PeftModel and keeps a frozen copy as "ref".
        model = get_peft_model(model, lcfg)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, j["init_b_std"])
        peft_config = None
    alpha = j.get("rpo_alpha", 0.0)
    K = j["grad_accum"]
    args = DPOConfig(
        output_dir=os.path.join(os.path.dirname(j["losses_out"]), "trl"),
        beta=j["beta"], loss_type=["sigmoid", "sft"] if alpha > 0 else ["sigmoid"],
        loss_weights=[1.0, alpha] if alpha > 0 else None,
        learning_rate=j["lr"], adam_beta1=j["betas"][0], adam_beta2=j["betas"][1], adam_epsilon=j["eps"],
        weight_decay=j["weight_decay"], optim="adamw_torch", max_grad_norm=j["clip"],
        lr_scheduler_type=j["schedule"], warmup_steps=j.get("warmup", 0),
        per_device_train_batch_size=1, gradient_accumulation_steps=K, max_steps=j["steps"],
        train_sampling_strategy="sequential", max_length=None, precompute_ref_log_probs=False,
        gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True, seed=j.get("seed", 0),
        logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0)
    pairs = j["pairs"]
    rows = [{"prompt_ids": pairs[i]["prompt"], "chosen_ids": pairs[i]["chosen"],
             "rejected_ids": pairs[i]["rejected"]} for i in j["order"][:j["steps"] * K]]
    rec = Record()
    trainer = PreTokenized(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                           peft_config=peft_config, callbacks=[rec])
    trained = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    if not trained or any(".default." not in n for n in trained):
        raise RuntimeError(f"the trainer trains {len(trained)} tensors, not the default adapter alone: {trained[:4]}")
    trainer.model.save_pretrained(j["init_out"], selected_adapters=["default"])
    trainer.train()
    trainer.model.save_pretrained(j["final_out"], selected_adapters=["default"])
    logs = rec.logs
    if len(logs) != j["steps"]:
        raise RuntimeError(f"{len(logs)} training logs for {j['steps']} steps")
    out = {k: [float(x[key]) for x in logs] for k, key in (
        ("loss", "loss"), ("grad_norm", "grad_norm"), ("chosen", "rewards/chosen"), ("rejected", "rewards/rejected"),
        ("margins", "rewards/margins"), ("accuracies", "rewards/accuracies"))}
    out["trl"] = __import__("trl").__version__
    with open(j["losses_out"], "w") as f:
        json.dump(out, f)


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    torch.set_num_threads(int(os.environ.get("FINETUNE_PYREF_THREADS", "1")))
    for j in jobs:
        {"logits": job_logits, "train": job_train, "chat": job_chat, "dpo": job_dpo}[j["op"]](j)


if __name__ == "__main__":
    main()
