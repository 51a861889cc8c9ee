#!/usr/bin/env python3
"""Generate the preference pairs of recipes/customer-support-dpo.yaml.

Reads the customer-support conversations that generate.py writes and turns
each into a preference pair in TRL's conversational form (one JSON object a
line, with the conversation's "label"):

    {"prompt": [system, user, (assistant, user)...],
     "chosen": [{"role": "assistant", "content": <the real answer>}],
     "rejected": [{"role": "assistant", "content": <a worse answer>}],
     "label": "refund_request",
     "rejected_kind": "wrong_intent" | "off_brand" | "curt" | "canned"}

The rejected answer is one of four, drawn per pair with equal odds:
  * wrong_intent: the same reply under another intent's "Intent:" line;
  * off_brand: the right intent, but the reply's warm opening swapped for a
    curt one and a dismissive closing added (the brand voice broken);
  * curt: the right intent and the reply's first sentence only, its next
    steps dropped (the system prompt asks for clear next steps). A model
    tuned only on the real answers tends to prefer it: it is the real
    answer's beginning, and shorter. Replies of one sentence get off_brand;
  * canned: the right intent, but another customer's answer to it, copied
    from the training conversations (a stock reply with someone else's
    name, product and order); intents with no other answer get off_brand.

Writes recipes/data/customer-support-dpo/train.jsonl (the first 200
training conversations) and eval.jsonl (all 100 eval conversations). Run it
from the repository root (Python 3.8+, standard library only):

    python3 recipes/data/generate_pairs.py           # writes the files
    python3 recipes/data/generate_pairs.py --check   # compares with the files on disk

The output is a pure function of the input files and the seed (default
20261205): the same inputs and seed give byte-identical files.
"""

import argparse
import json
import os
import random
import re
import sys

SRC = "recipes/data/customer-support"
OUT = "recipes/data/customer-support-dpo"
TRAIN_PAIRS = 200

CURT_OPENERS = [
    "Read the FAQ next time.",
    "This is covered in the manual.",
    "We get this question a lot.",
    "Not sure why you're asking us.",
    "Fine.",
    "As already stated on our website,",
]
CURT_CLOSERS = [
    "That's all we can do.",
    "Please don't reply to this message.",
    "Figure out the rest in the app.",
    "No further help is available.",
    "Don't contact us again about this.",
]
# A reply's first sentence: up to its first ".", "!" or "?" followed by a
# space.
FIRST = re.compile(r"^(.+?[.!?])\s+\S")
# A reply's first sentence is its warm opening when it ends with "!" or is
# one of these.
WARM = re.compile(r"^(Happy to help[^.!]*[.!]|Sorry[^.!]*[.!]|Thanks[^.!]*[.!]|Welcome[^.!]*[.!]|Great[^.!]*[.!]|Good news[^.!]*[.!]|No problem[^.!]*[.!]|Of course[^.!]*[.!]|[^.!?]{0,60}!)\s*")


def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def pair(rng, rec, intents, stock):
    msgs = rec["messages"]
    last = msgs[-1]["content"]
    head, _, body = last.partition("\n")
    if not head.startswith("Intent: "):
        raise SystemExit("%s: an answer without an Intent line: %r" % (rec.get("label"), last[:60]))
    intent = head[len("Intent: "):]
    draw = rng.random()
    first = FIRST.match(body)
    others = [a for a in stock.get(intent, []) if a != last]
    if draw >= 3 / 4 and others:
        kind = "canned"
        rejected = rng.choice(others)
    elif draw >= 1 / 2 and draw < 3 / 4 and first:
        kind = "curt"
        rejected = head + "\n" + first.group(1)
    elif draw < 1 / 4:
        kind = "wrong_intent"
        other = rng.choice([i for i in intents if i != intent])
        rejected = "Intent: " + other + "\n" + body
    else:
        kind = "off_brand"
        rest = WARM.sub("", body, count=1)
        opener = rng.choice(CURT_OPENERS)
        if opener.endswith(",") and rest:
            rest = rest[0].lower() + rest[1:]
        rejected = head + "\n" + opener + " " + rest + " " + rng.choice(CURT_CLOSERS)
    return {
        "prompt": msgs[:-1],
        "chosen": [{"role": "assistant", "content": last}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "label": rec.get("label", intent),
        "rejected_kind": kind,
    }


def build(seed):
    train, ev = read(os.path.join(SRC, "train.jsonl")), read(os.path.join(SRC, "eval.jsonl"))
    intents = sorted({r["label"] for r in train + ev})
    stock = {}  # intent -> the training conversations' answers to it
    for r in train:
        stock.setdefault(r["label"], []).append(r["messages"][-1]["content"])
    out = {}
    for name, recs, salt in (("train.jsonl", train[:TRAIN_PAIRS], 1), ("eval.jsonl", ev, 2)):
        rng = random.Random(seed * 10 + salt)
        lines = [json.dumps(pair(rng, r, intents, stock), ensure_ascii=False) for r in recs]
        out[name] = "\n".join(lines) + "\n"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=20261205)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files on disk")
    a = ap.parse_args()
    files = build(a.seed)
    if a.check:
        bad = [n for n, text in files.items() if not os.path.exists(os.path.join(a.out, n)) or open(os.path.join(a.out, n), encoding="utf-8").read() != text]
        if bad:
            print("differ from a fresh generation: " + ", ".join(bad), file=sys.stderr)
            sys.exit(1)
        print("up to date")
        return
    os.makedirs(a.out, exist_ok=True)
    for n, text in files.items():
        tmp = os.path.join(a.out, n + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, os.path.join(a.out, n))
        print("wrote %s (%d pairs)" % (os.path.join(a.out, n), text.count("\n")))


if __name__ == "__main__":
    main()
