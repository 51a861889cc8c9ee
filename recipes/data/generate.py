#!/usr/bin/env python3
"""Generate the training and evaluation data shipped with finetune's recipes.

Writes four JSONL files (OpenAI chat records with a "label" field):

    recipes/data/customer-support/train.jsonl   400 conversations
    recipes/data/customer-support/eval.jsonl    100 conversations
    recipes/data/legal/train.jsonl              400 clause records
    recipes/data/legal/eval.jsonl               100 clause records

Run it from the repository root (Python 3.8+, standard library only):

    python3 recipes/data/generate.py              # writes the files above
    python3 recipes/data/generate.py --check      # regenerates in memory, compares
                                                  # with the files on disk, exits 1
                                                  # if they differ
    python3 recipes/data/generate.py --seed 7 --out /tmp/data   # another seed/folder

The output is a pure function of the seed (default 20250605): the same seed
gives byte-identical files.

Everything here is synthetic and written for this project. The company
("Lumora Home"), its products, the customers, the parties and the contract
clauses are invented; any resemblance to real firms or people is accidental.

How the evaluation split is kept apart from the training split:
  * every intent (support) and clause category (legal) has its own pool of
    message/clause templates; the last few templates of each pool are reserved
    for the evaluation split and never used for training;
  * evaluation records are generated first, then every training candidate
    whose user text has a word-3-gram Jaccard similarity of MAX_SIM or more
    with any evaluation prompt (or that repeats one exactly) is rejected and
    drawn again.  The script prints the largest similarity it kept.
"""

import argparse
import json
import os
import random
import re
import string
import sys

DEFAULT_SEED = 20250605
MAX_SIM = 0.40          # rejection threshold for train prompts vs eval prompts
MAX_SIM_SPLIT = 0.80    # near-duplicates inside one split are redrawn too

HERE = os.path.dirname(os.path.abspath(__file__))

# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------

_FMT = string.Formatter()


def fields(tmpl):
    """The {names} a template uses."""
    return {f for _, f, _, _ in _FMT.parse(tmpl) if f}


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


def shingles(text, n=3):
    w = words(text)
    if len(w) < n:
        return {tuple(w)}
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a, b):
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def cap(s):
    return s[:1].upper() + s[1:] if s else s


class Similarity:
    """Nearest-neighbour word-3-gram Jaccard against a growing set of texts."""

    def __init__(self):
        self.sets = []
        self.exact = set()

    def add(self, text):
        self.sets.append(shingles(text))
        self.exact.add(text.strip().lower())

    def max_sim(self, text):
        s = shingles(text)
        best = 0.0
        for t in self.sets:
            if len(s & t):
                j = jaccard(s, t)
                if j > best:
                    best = j
        return best

    def contains(self, text):
        return text.strip().lower() in self.exact


def record(system, turns, label):
    msgs = [{"role": "system", "content": system}]
    for user, assistant in turns:
        msgs.append({"role": "user", "content": user})
        msgs.append({"role": "assistant", "content": assistant})
    return {"messages": msgs, "label": label}


def prompt_text(rec):
    return "\n".join(m["content"] for m in rec["messages"] if m["role"] == "user")


# --------------------------------------------------------------------------
# customer support: Lumora Home, a fictional smart-home brand
# --------------------------------------------------------------------------

SUPPORT_SYSTEM = ("You are Lumora Home's customer support assistant: name the customer's "
                  "intent on the first line, then reply warmly and concisely with clear next steps.")

# product lines: hubs, lighting, cameras & doorbells, climate, plugs & locks, audio
DEVICES = {
    "Lumora Hub Mini": 59, "Lumora Hub Pro": 129,
    "Glow Bulb A19 4-pack": 49, "Glow Bulb GU10": 19, "Glow Lightstrip 2m": 39,
    "Glow Lightstrip 5m": 69, "Glow Floor Lamp": 149,
    "Sentinel Cam Indoor": 79, "Sentinel Cam Outdoor": 149, "Sentinel Video Doorbell": 179,
    "Sentinel Floodlight Cam": 229,
    "Aura Smart Thermostat": 199, "Aura Room Sensor": 39,
    "Pulse Smart Plug": 25, "Pulse Smart Plug 3-pack": 59,
    "Keystone Smart Lock": 249,
    "Tempo Speaker": 99, "Tempo Soundbar": 279,
}
CAMS = ["Sentinel Cam Indoor", "Sentinel Cam Outdoor", "Sentinel Video Doorbell",
        "Sentinel Floodlight Cam"]
ACCESSORIES = {
    "Sentinel Solar Panel": 49, "Cam Wall Mount": 15, "Doorbell Chime Adapter": 25,
    "Lightstrip Connector Kit": 12, "Lightstrip Extension 1m": 19, "Keystone Keypad": 59,
    "Aura Trim Plate": 15, "Spare Battery Pack": 35, "USB-C Power Adapter": 19,
    "Tempo Wall Bracket": 29,
}
PRODUCTS = {**DEVICES, **ACCESSORIES}
PLANS = ["Protect Basic", "Protect Plus", "Protect Pro"]
PLAN_PRICES = {"Protect Basic": "$3.99", "Protect Plus": "$9.99", "Protect Pro": "$19.99"}
COMPETITORS = ["HomeMart", "Voltway", "ShopRight Electronics", "Gadget Depot", "BrightBuy",
               "TechTrolley", "Northside Appliances"]
PHONES = ["iPhone 12", "iPhone 15", "iPad", "Pixel 7", "Pixel 8a", "Galaxy S22", "Galaxy A54",
          "OnePlus 11", "Android phone", "Moto G"]
ECOSYSTEMS = ["Alexa", "Google Home", "Apple Home", "SmartThings", "Matter"]
PARTS = ["mounting screws", "power adapter", "USB-C cable", "wall plate", "quick start guide",
         "battery", "drill template", "wedge mount", "connector clips", "release pin"]
AGENTS = ["Tom", "Jess", "Mark", "Aisha", "Daniel", "Sofia", "Ryan", "Chloe", "Marcus", "Elena"]
CITIES_NEW = ["22 Fernhill Road, Bristol BS6 7QT", "418 Maple Ave, Apt 3B, Columbus, OH 43215",
              "9 Kestrel Close, Leeds LS8 2HD", "1570 Harbor Blvd, Unit 12, Oakland, CA 94607",
              "Flat 4, 31 Quayside Street, Glasgow G3 8BP", "77 Birchwood Lane, Portland, OR 97215",
              "5 Rue des Tanneurs, 1000 Bruxelles", "2210 W Elm St, Denver, CO 80211",
              "14 Holloway Terrace, Dublin 8", "603 Cedar Court, Austin, TX 78704"]
BUSINESSES = ["our dental practice", "a 40-room hotel", "our property management company",
              "a chain of 6 cafés", "the school district", "our co-working space",
              "a holiday-let business", "our construction firm", "a care home", "our office"]
PROMO = ["SPRING20", "WELCOME10", "HOME15", "LUMORA25", "SAVE10NOW", "BFRIDAY30"]
ERRORS = ["error E-17", "error 403", "code L-02", "\"Something went wrong\"",
          "\"Session expired\"", "error 1009", "a blank white screen"]
VERSIONS = ["2.4.1", "3.0.2", "3.1.0", "1.9.8", "4.2.0", "2.7.5"]
WHEN = ["yesterday", "on Monday", "last Friday", "two days ago", "on the 14th", "this morning",
        "over a week ago", "on Tuesday", "last week"]
FIRST_NAMES = ["Priya", "Marco", "Sarah", "James", "Zoë", "Kwame", "Olivia", "Hiroshi", "Fatima",
               "Liam", "Chen", "Gabriela", "Noah", "Aoife", "Mateusz", "Amara", "Ethan", "Leila",
               "José", "Hannah", "Ravi", "Ingrid", "Tariq", "Megan", "Dmitri", "Nia"]
SURNAMES = ["patel", "rossi", "ng", "okafor", "smith", "tanaka", "garcia", "murphy", "kowalski",
            "hughes", "haddad", "lindqvist", "brown", "osei", "silva"]
MAIL_DOMAINS = ["example.com", "example.org", "example.net"]


def support_slots(rng):
    """Fresh values for every slot a support template may use."""
    d = str(rng.randint(100000, 999999))
    order_user = rng.choice(["LM-{d}", "LM-{d}", "#LM-{d}", "LM{d}", "{d}", "#{d}", "lm-{d}",
                             "LM-{d}"]).format(d=d)
    device = rng.choice(sorted(DEVICES))
    product = rng.choice(sorted(PRODUCTS))
    accessory = rng.choice(sorted(ACCESSORIES))
    wrong = rng.choice([p for p in sorted(PRODUCTS) if p != product])
    price = PRODUCTS[product]
    lower = max(5, int(price * rng.choice([0.8, 0.85, 0.9, 0.92])))
    pi = rng.randrange(len(PLANS) - 1)
    first = rng.choice(FIRST_NAMES)
    points = rng.choice([120, 250, 380, 500, 740, 1200, 1650, 2300, 3100, 4800])
    return {
        "order": order_user, "order_c": "LM-" + d,
        "device": device, "product": product, "accessory": accessory, "wrong": wrong,
        "cam": rng.choice(CAMS),
        "price": "$%d" % price, "lower": "$%d" % lower,
        "competitor": rng.choice(COMPETITORS),
        "plan": PLANS[pi], "plan2": PLANS[rng.randrange(pi + 1, len(PLANS))],
        "plan_any": rng.choice(PLANS),
        "charge": rng.choice(["$3.99", "$9.99", "$19.99", "$99.99", "$199.99", "$47.96", "$14.98"]),
        "email": "%s.%s@%s" % (first.lower().replace("ë", "e").replace("é", "e"),
                               rng.choice(SURNAMES), rng.choice(MAIL_DOMAINS)),
        "last4": "%04d" % rng.randint(0, 9999),
        "points": str(points), "points_value": "$%d" % (points // 100),
        "qty": str(rng.choice([15, 20, 24, 30, 40, 50, 60, 75, 100, 120, 200, 250, 400])),
        "code": rng.choice(PROMO),
        "gc": "GC-%04d-%04d" % (rng.randint(0, 9999), rng.randint(0, 9999)),
        "agent": rng.choice(AGENTS), "part": rng.choice(PARTS),
        "phone": rng.choice(PHONES), "eco": rng.choice(ECOSYSTEMS),
        "version": rng.choice(VERSIONS), "err": rng.choice(ERRORS),
        "addr": rng.choice(CITIES_NEW), "biz": rng.choice(BUSINESSES),
        "when": rng.choice(WHEN), "days": str(rng.choice([3, 4, 5, 6, 8, 10, 12, 20])),
        "n": str(rng.choice([2, 3, 4, 5])), "years": str(rng.choice([2, 3, 4, 5, 6, 8])),
        "name": first,
    }


# Each intent: "user" templates (the last EVAL_CORES are reserved for eval),
# "reply" templates (a reply may only use slots its user text used; {order}
# in a reply is the canonical order number), and optionally "ask" replies used
# when the customer did not give the order number the intent needs.
EVAL_CORES = 3

INTENTS = {
    "refund_request": {
        "user": [
            "I'd like a refund for my {product}, it just isn't what I expected.",
            "can i get my money back for order {order}? changed my mind about the {product}",
            "I sent the {product} back two weeks ago and still haven't seen the refund. When will it hit my account?||3",
            "Please refund order {order}. The {device} doesn't suit our house at all.",
            "refund pls. {product}. not happy with it",
            "How do I request a refund? I bought a {device} {days} days ago and it's not for me.",
            "I want a full refund on the {product} I ordered, it's way bigger than the photos made it look.",
            "Order {order} - we ended up not needing the {product}. Can I get the money back to my card?",
            "Hello, the {device} from order {order} went back to you last week — could you tell me when my money comes back?||0,1",
            "My teenager bought a {product} on my card without asking. It's still sealed. Is it possible to be reimbursed?",
            "We decided to go with another brand after all. What do I need to do to get my money returned for the {device}?",
        ],
        "reply": [
            "I'm sorry the {product} wasn't right for you. Refunds for order {order} go back to your original payment method within 5–7 business days of the return reaching us, and if you still need a prepaid label, reply here and I'll email one within 24 hours.",
            "Sorry it didn't work out! Refunds for order {order} go back to the original payment method within 5–7 business days of your return arriving at our warehouse; if you haven't sent it yet, reply here and I'll email you a free return label.",
            "I'm sorry the {device} wasn't a good fit. Items can be returned for a full refund within 30 days of delivery — reply with your order number and I'll email a prepaid return label today.",
            "Sorry the {product} didn't work out. Refunds reach your original payment method within 5–7 business days after the return is scanned in; if it's been longer than that, send me your order number and I'll chase it with our finance team.",
        ],
        "ask": [
            "I'm sorry it wasn't what you hoped for. Anything bought from us can be returned within 30 days for a full refund — just reply with your order number (it starts with LM-) and I'll send a prepaid return label straight away.",
            "Sorry to hear that! Please reply with your order number and I'll start the return; once the item reaches us, the refund lands on your original payment method within 5–7 business days.",
        ],
    },
    "order_status": {
        "user": [
            "Where is my order {order}? It's been {days} days.",
            "hi, any update on order {order}? tracking hasn't moved since {when}",
            "When will my {product} arrive? Ordered it {when}.",
            "Can you check the status of my order please? It's {order}.",
            "my {device} still hasnt shipped?? order {order}",
            "I placed an order {when} and haven't received a shipping email yet. Is everything ok?",
            "Just wondering if order {order} has been dispatched yet, I need the {product} before the weekend.",
            "Tracking says 'label created' for {order} and nothing else. Has it actually left your warehouse?",
            "I'm trying to figure out whether the {device} I bought is on its way — the confirmation number is {order}.",
            "Ordered a {product} for my dad's birthday and there's no sign of it. Any idea where it's got to?",
            "is {order} lost?? the courier site shows nothing since {when}",
        ],
        "reply": [
            "Thanks for checking in! You can follow order {order} live under Account > Orders in the Lumora Home app or through the tracking link in your shipping email; if the tracking hasn't moved in 2 business days, reply here and I'll open a trace with the courier.",
            "Happy to help! Orders ship within 1 business day and standard delivery takes 3–5 business days; order {order}'s latest tracking is under Account > Orders, and if nothing has updated by tomorrow I'll chase the courier for you.",
            "I'm sorry for the wait on order {order}. I've flagged it to our shipping team, who will email you an update within 24 hours, and if it turns out to be lost we'll send a replacement at no cost.",
        ],
        "ask": [
            "Happy to look into it! Please reply with your order number (it starts with LM-) and I'll check where the parcel is; you can also see live tracking under Account > Orders in the Lumora Home app.",
            "Sorry for the wait! If you send me your order number, I'll check the latest tracking and chase the courier if it has stalled.",
        ],
    },
    "cancel_order": {
        "user": [
            "Please cancel order {order}, I ordered the wrong thing.",
            "can I still cancel my order? just bought a {product} by mistake",
            "I need to cancel {order} before it ships. Ordered two {device}s instead of one.",
            "Cancel my order please. Found the {product} cheaper elsewhere tbh.",
            "hi i accidentally placed the same order twice, can you cancel one of them? {order}",
            "Is it too late to cancel the {device} I ordered {when}?",
            "I'd like to stop order {order} from going out — my plans changed.",
            "Cancel {order} asap!!",
            "Ordered a {product} about an hour ago but my husband already bought one. Can you stop my order?",
            "Please don't send order {order}. I no longer want it and would like it voided.",
            "Changed my mind on the {device} I just purchased — can the order be called off before it leaves the warehouse?",
        ],
        "reply": [
            "No problem! I've asked our warehouse to cancel order {order}; if it hasn't shipped yet you'll get a cancellation email within a few hours and the refund within 3–5 business days.",
            "I can help with that. Orders can be cancelled until they ship, so I've put a stop on {order} and will confirm by email shortly — if it has already left, just refuse the delivery or use the free return label we'll send.",
            "Done — I've requested cancellation of order {order}. You'll receive a confirmation email once it's processed, and the money goes back to your original payment method within 3–5 business days.",
        ],
        "ask": [
            "Happy to help! Orders can be cancelled until they ship — reply with the order number (it starts with LM-) and I'll stop it right away.",
            "No problem. Please send me the order number and I'll cancel it if it hasn't shipped yet; if it has, we'll email you a free return label instead.",
        ],
    },
    "cancel_subscription": {
        "user": [
            "How do I cancel my {plan_any} subscription?",
            "I want to cancel Lumora Protect. I don't use the cameras anymore.",
            "please cancel my subscription, i've moved house and took the {cam} down",
            "Cancel my {plan_any} plan effective immediately. I'm not paying for this anymore.",
            "Hi there, we're cutting back on subscriptions this year. Can you stop my {plan_any} from renewing?",
            "how can i unsubscribe from the monthly plan? can't find it in the app",
            "I'd like to end my Protect subscription. Will I lose my recorded clips?||1",
            "I'm switching to a different camera system so please terminate my {plan_any} membership.",
            "Don't renew my Lumora Protect next month. How do I turn off auto-renew?",
            "We sold the house with the {cam} included, so the video plan on my account needs to go. Can you shut it off?",
            "is there a way to end protect plus without calling someone?",
        ],
        "reply": [
            "Sorry to see you go! You can cancel any time in the Lumora Home app under Account > Subscription > Cancel plan; you'll keep {plan_any} features until the end of the current billing period, and saved clips stay downloadable for 30 days.",
            "No problem. Open the Lumora Home app, go to Account > Subscription and tap Cancel plan — you won't be charged again, and your recordings stay available to download for 30 days.",
            "I can help with that. Cancelling under Account > Subscription > Cancel plan stops the next renewal, your plan stays active until the end of the period you've paid for, and I'm happy to cancel it for you if you reply with the email on the account.",
        ],
    },
    "change_shipping_address": {
        "user": [
            "I need to change the delivery address on order {order}. New address: {addr}",
            "can i update my shipping address? i just moved. order {order}",
            "Oops, I put my old address on my order. It should go to {addr} instead.",
            "Please ship order {order} to my work address instead: {addr}.",
            "Is it possible to redirect my {product} to a different address? I'm away that week.",
            "wrong address on my order!! need it changed to {addr}",
            "How do I edit the shipping address after placing an order?",
            "My order {order} has a typo in the postcode. Can you fix it before it ships?",
            "Could the {device} I bought be delivered to my sister's place at {addr} rather than mine?",
            "I'll be staying somewhere else next week — can order {order} be sent to {addr}?",
            "Entered my billing address as the shipping one by accident. Can it be switched before dispatch?",
        ],
        "reply": [
            "Thanks for letting us know! I've asked our warehouse to update order {order} to {addr}; you'll get a confirmation email shortly, and if it has already shipped we'll redirect it with the courier instead.",
            "No problem — addresses can be changed until an order ships. I've sent the update for {order} to our shipping team and you'll see the new address under Account > Orders within the hour.",
            "Happy to help! I've requested the change on order {order}; if the parcel has already left, you can also redirect it from the tracking link in your shipping email.",
        ],
        "ask": [
            "Happy to help! Addresses can be changed until the order ships — reply with your order number and the full new address, and I'll update it right away.",
            "No problem. Please send me the order number and the new address; if the parcel has already shipped, you can also redirect it from the tracking link in your shipping email.",
        ],
    },
    "damaged_item": {
        "user": [
            "My {device} arrived damaged. The box was crushed and it won't turn on.",
            "the {device} from order {order} came with a cracked casing",
            "Received my {device} {when} and the glass is smashed. Really disappointed.",
            "Item damaged in transit — order {order}. What now?",
            "hey so my {device} showed up with a big dent in it, can i get a new one",
            "The {product} I got is broken, there's a rattling sound inside and a piece is snapped off.",
            "Order {order}: the {cam} arrived scratched all over and the lens is chipped.",
            "Opened the parcel and the {device} was in pieces. Not impressed at all.",
            "Courier clearly dropped my parcel — the {product} inside is bent and one corner has split open.",
            "I've just unboxed order {order} and the {device} has a crack running right across the front panel.",
            "there was water damage on my delivery and the {product} looks ruined",
        ],
        "reply": [
            "I'm so sorry it arrived like that! Please reply with a photo of the damage and the packaging, and I'll ship a replacement for order {order} within 1–2 business days at no cost — there's no need to send the damaged one back.",
            "That's not the experience we want for you, sorry! Send us a quick photo of the damaged {product} and we'll dispatch a free replacement straight away; you don't need to return the broken unit.",
            "Sorry about that — it should have arrived in perfect shape. Reply with a photo of the damage and your order number, and we'll send a replacement {product} within 1–2 business days or a full refund if you prefer.",
        ],
    },
    "wrong_item_received": {
        "user": [
            "I ordered a {product} but received a {wrong}.",
            "wrong item in my box. order {order}. got a {wrong} instead of the {product}",
            "You sent me the wrong thing! I paid for a {product} and got a {wrong}.",
            "Hi, my order {order} came today but it contains a {wrong}, not what I bought.",
            "Got someone else's order I think? Box has a {wrong} in it and the packing slip has a different name.",
            "The package for {order} had the wrong colour {product} in it.",
            "received the incorrect product - i need the {product} not the {wrong}",
            "Instead of my {product}, there was a {wrong} in the parcel. Can this be swapped?",
            "Just opened order {order} and it's a {wrong}... definitely didn't order that. What happens now?",
            "There's been a mix-up: the box says {product} on the label but the thing inside is a {wrong}.",
            "my delivery is not what i paid for, it's a totally different item",
        ],
        "reply": [
            "Sorry for the mix-up! I'm sending the correct {product} out today by express delivery, and you'll get a prepaid label by email to return the {wrong} whenever it suits you.",
            "Apologies — that's our mistake. I've arranged a replacement for order {order} that ships within 1 business day, and a free return label for the wrong item will reach your inbox within 24 hours.",
            "I'm sorry you received the wrong item! Please reply with your order number and a photo of what arrived, and we'll ship the right one right away with a prepaid label for the return.",
        ],
    },
    "missing_parts": {
        "user": [
            "My {device} box was missing the {part}.",
            "there's no {part} in the box for order {order}??",
            "Hi, the {device} I received doesn't include the {part}, so I can't finish the install.",
            "Opened my {device} and the {part} isn't there. Can you send one?",
            "missing {part} — {device}, order {order}",
            "Everything arrived except the {part}. Kind of hard to set it up without it.",
            "Got my {device} but the {part} listed in the manual isn't in the box.",
            "The kit for order {order} was incomplete, the {part} is nowhere to be found.",
            "I can't mount my new {device} because the packet that should hold the {part} is empty.",
            "Can you post me a {part}? It wasn't packed with the {device} I bought {when}.",
            "my box came without half the bits, the {part} isnt in there",
        ],
        "reply": [
            "Sorry about that! I've arranged for a {part} to be posted to you free of charge — it should arrive within 3–5 business days, and you'll get tracking by email.",
            "Apologies for the missing {part}! I've sent a free replacement for order {order}, which ships within 1 business day, and you'll receive the tracking number by email.",
            "Sorry it wasn't in the box! Please reply with your order number and delivery address, and we'll send the {part} out free within 3–5 business days.",
        ],
    },
    "delivery_missed": {
        "user": [
            "I missed the delivery for order {order}. Can it be redelivered?",
            "the courier left a card saying they tried to deliver my {product} but i was home all day!",
            "Missed my parcel {when}, how do I rebook the delivery?",
            "Delivery attempt failed for {order}. I can't be home on weekdays.",
            "i wasn't in when they came with my {device}. what happens now",
            "The driver said nobody answered but I was in. Now my order {order} is going back to the depot?",
            "Can I pick up my missed delivery from somewhere instead of waiting for another attempt?",
            "Tracking for {order} says 'delivery attempted' but no one came to my door.",
            "I was out when the {product} was due. Is there any way to choose a different day for the second try?",
            "Got a 'sorry we missed you' notice for order {order} — can it go to a pickup point instead?",
            "the delivery guy didn't even ring, just marked it as missed. really annoying",
        ],
        "reply": [
            "Sorry you missed it! The courier will try again on the next business day, or you can pick a new date or a nearby pickup point using the tracking link in your shipping email for order {order}.",
            "I'm sorry about the missed delivery. I've asked the courier to reattempt delivery of order {order} and you can also switch it to a local pickup point from the tracking link; parcels are held for 7 days before returning to us.",
            "That's frustrating, sorry! Reply with your order number and I'll arrange a redelivery on a day that suits you or send it to a pickup point near you.",
        ],
    },
    "warranty_claim": {
        "user": [
            "My {device} stopped working after {n} months. Is it under warranty?",
            "I'd like to make a warranty claim for my {device}, it keeps rebooting.",
            "the {device} i bought last year is dead. wont power on at all. warranty??",
            "Is the {device} covered by warranty? It was bought in the spring of last year and no longer holds a charge.",
            "Hi, my {device} (order {order}) has developed a fault — the light flickers constantly. Can I get it replaced?",
            "how long is the warranty on the {device}? mine broke after 18 months",
            "Warranty claim please: {device} makes a buzzing noise and then cuts out.",
            "My {device} is just over a year old and has completely failed. What are my options?",
            "The {device} I've had since the spring has stopped responding and a reset didn't help. Am I still covered for a swap?",
            "Bought a {device} about {n} months ago under order {order} and it's now faulty. Could you replace it under guarantee?",
            "does my guarantee cover a {device} that just died on its own? no damage or anything",
        ],
        "reply": [
            "Sorry your {device} has stopped working! It's covered by our 2-year warranty — reply with your order number or the serial number from the back of the device plus a short video of the fault, and we'll ship a replacement as soon as the claim is approved.",
            "I'm sorry about the fault. Your {device} is covered for 2 years from delivery, so I've opened a warranty claim on order {order}; please reply with a short video of the issue and we'll send a replacement within 2 business days of approval.",
            "That's not what we want to hear, sorry! All Lumora hardware has a 2-year warranty; you can start a claim under Help > Warranty in the Lumora Home app, or reply here with the serial number and a description and I'll do it for you.",
        ],
    },
    "return_label_request": {
        "user": [
            "Can you send me a return label for order {order}?",
            "i need a return label for the {product}, didn't come in the box",
            "How do I get a shipping label to send back my {device}?",
            "Return label please — order {order}.",
            "I started a return in the app but never received the label. Could you resend it?",
            "where do i print the return label? want to send the {product} back",
            "Please email me a prepaid label for returning my {product} to {email}.",
            "Could I get a QR code or label to drop the {product} off at the post office? Order {order}.",
            "The returns email said a label would follow, but nothing has shown up in my inbox for {order}.",
            "I don't have a printer — is there another way to get the label for sending back the {device}?",
            "need the prepaid label to ship something back, I bought it {when}",
        ],
        "reply": [
            "Of course! I've emailed a prepaid return label for order {order} — it should arrive within 24 hours, and you can drop the parcel at any courier location within 30 days of delivery.",
            "Happy to help! Your free return label for the {product} is on its way to your inbox, and you can also download it under Account > Orders > Return in the Lumora Home app.",
            "Sure thing — I've sent the label to {email}; just pack the {product} securely and drop it at any courier location, and the refund follows within 5–7 business days of it reaching us.",
        ],
        "ask": [
            "Of course! Reply with your order number and I'll email you a prepaid return label within 24 hours; you can also create one yourself under Account > Orders > Return in the Lumora Home app.",
        ],
    },
    "password_reset": {
        "user": [
            "I forgot my password and can't log in.",
            "how do i reset my password",
            "The password reset email never arrives. I've tried {n} times. My email is {email}.",
            "Reset my password please, account email {email}",
            "I can't remember my Lumora password and the reset link says it's expired.",
            "need to change my password, think my account might be compromised",
            "Hi, I'm locked out after too many wrong password attempts. How do I get back in?",
            "forgot password. help.",
            "The link to choose a new password keeps telling me it's invalid — what am I doing wrong?",
            "I've lost track of my login details and the reset message isn't reaching {email}. Can you trigger it again?",
            "is there a way to set a new password without the app? I only have a laptop right now",
        ],
        "reply": [
            "No problem! Tap 'Forgot password?' on the sign-in screen and we'll email a reset link that's valid for 30 minutes; if it doesn't arrive within 5 minutes, check your spam folder or reply here and I'll resend it.",
            "Sorry you're locked out! I've sent a fresh reset link to {email} — it expires after 30 minutes, so use it soon, and check your spam or promotions folder if it isn't in your inbox.",
            "Happy to help. Use 'Forgot password?' on the Lumora Home sign-in page (app or web) to get a reset link; if you think someone else has accessed your account, reset it now and reply here so we can sign out all other sessions for you.",
        ],
    },
    "app_login_problem": {
        "user": [
            "The Lumora Home app won't let me log in, it just says {err}.",
            "cant sign in to the app on my {phone}. keeps spinning forever",
            "I know my password is right but the app says login failed.",
            "After the latest app update I'm stuck on the login screen with {err}.",
            "The two-factor code never arrives so I can't get into the app.||2",
            "app logs me out every few minutes on my {phone}, super annoying",
            "Sign in with Apple doesn't work in the Lumora Home app anymore.",
            "Getting {err} every time I try to log in on my {phone}. Password is correct.",
            "I was signed into the app for months and suddenly it kicked me out and won't accept my details.",
            "The app on my {phone} says my account doesn't exist, but I've been using it since last year with {email}.",
            "login broken?? web works but the phone app keeps throwing {err}",
        ],
        "reply": [
            "Sorry about that! Please update the Lumora Home app to the latest version, force-close it and sign in again; if you still see {err}, reply with a screenshot and I'll escalate it to our app team.",
            "I'm sorry you can't get in. Try updating the app, then sign out and back in (or reinstall it on your {phone}); if that doesn't fix it, reply here and we'll check your account from our side.",
            "Thanks for flagging this! Most login errors are fixed by updating the app and restarting the phone; if your two-factor code doesn't arrive within a couple of minutes, tap 'Send code by email' instead, and reply here if you're still stuck.",
        ],
    },
    "account_deletion": {
        "user": [
            "Please delete my Lumora account and all my data.",
            "I want my personal data erased under GDPR. Account email {email}.",
            "how do i close my account permanently",
            "Delete my account. I don't want you holding any of my information anymore.",
            "I'm making a right-to-erasure request for all data linked to {email}.",
            "Can you remove my account? I sold all my Lumora devices.",
            "what data do you keep about me and can you delete it all",
            "I'd like my account and camera recordings wiped, please confirm when done.",
            "Under data protection law I'm asking you to erase every record you hold on me — the account uses {email}.",
            "I no longer own any of your products, so please get rid of my profile completely.",
            "how do I make sure my account is gone for good, including video history?",
        ],
        "reply": [
            "Of course. You can delete your account yourself under Account > Privacy > Delete account in the Lumora Home app, or reply to confirm and I'll submit the request for {email}; we'll erase your data within 30 days and email you when it's done.",
            "I've logged an erasure request for the account linked to {email}. You'll get an email asking you to confirm, after which all personal data, devices and recordings are deleted within 30 days and any active subscription is cancelled.",
            "Happy to help with that. Go to Account > Privacy > Delete account in the app, or reply here from the email address on the account and we'll process it for you; everything is permanently erased within 30 days.",
        ],
    },
    "billing_dispute": {
        "user": [
            "I was charged {charge} and I have no idea what for.",
            "why did you charge me twice this month?? {charge} two times on my card ending {last4}",
            "There's a {charge} charge from Lumora on my statement but I cancelled my plan last month.",
            "I've been billed for {plan} but I'm on {plan_any}. Please fix this.",
            "unrecognised charge of {charge}. i didnt authorise this",
            "I was overcharged for order {order} — the checkout said one price and I paid more.",
            "My card ending {last4} was charged {charge} {when}. I want this refunded.",
            "You keep charging me even though I don't have any cameras anymore!",
            "A payment of {charge} left my account {when} with 'LUMORA' as the reference and I can't match it to anything I bought.",
            "I'm disputing the latest invoice: it bills me for a plan I downgraded weeks ago.",
            "why is my bank showing two identical lumora payments of {charge}? only ordered once",
        ],
        "reply": [
            "I'm sorry for the confusion over the {charge} charge. Please reply with the date it appeared and the last 4 digits of the card, and I'll check it within 1 business day; if it was charged in error, we'll refund it within 3–5 business days.",
            "Sorry about that! Unexpected charges are most often an annual Protect renewal; I've asked our billing team to review the {charge} payment on the card ending {last4}, and if it was a mistake the refund will reach you within 3–5 business days.",
            "I'm sorry about the billing mix-up. You can see every charge under Account > Billing history in the app — reply with the charge date and amount and I'll investigate and refund anything taken in error.",
        ],
    },
    "update_payment_method": {
        "user": [
            "How do I update my card details? My old card expired.",
            "need to change the payment card on my subscription",
            "My card ending {last4} was replaced by the bank, how do I add the new one?",
            "Can I pay for {plan_any} with PayPal instead of my card?||1",
            "Please update my payment method, the current one keeps declining.",
            "where do i change billing info in the app",
            "I got an email saying my payment failed. I have a new card — where do I put it?",
            "I want to switch the card my Protect plan is billed to.",
            "The bank issued me a new debit card after fraud, so the one ending {last4} no longer works. How do I swap it on my account?",
            "Would it be possible to take future subscription payments from a different card?",
            "payment failed again for my plan — how do I put a working card on the account",
        ],
        "reply": [
            "You can update it in the Lumora Home app under Account > Payment methods: add the new card, then tap 'Set as default' so your subscription uses it. For your security, please never share full card numbers in chat.",
            "Easy fix! Go to Account > Payment methods, add your new card or PayPal, and make it the default — we'll retry any failed payment automatically within 24 hours.",
            "Thanks for keeping your details up to date! Add the new card under Account > Payment methods and set it as default, then remove the card ending {last4}; please don't send card details here, as we never ask for them in chat.",
        ],
    },
    "invoice_request": {
        "user": [
            "Can I get an invoice for order {order}? Need it for my expenses.",
            "I need a VAT invoice for my {product} purchase.",
            "please send receipt for {order} to {email}",
            "Where can I download invoices for my subscription payments?",
            "My company needs an invoice with our business name on it for order {order}.",
            "lost my receipt for the {device}, need it for a warranty thing",
            "Could you resend the invoice for my last {plan_any} payment?",
            "Is it possible to get a proper tax invoice rather than the order confirmation for {order}?",
            "Our accounts team is asking for a receipt showing the {product} I bought {when} — can you send one over?",
            "Need paperwork for the {device}: an itemised invoice addressed to my employer, please.",
            "how do i get copies of all my receipts from this year",
        ],
        "reply": [
            "Of course! You can download the invoice for order {order} under Account > Orders > Invoice in the Lumora Home app, and I've also emailed a copy to the address on your account.",
            "Happy to help — invoices for every order and subscription payment are under Account > Orders (or Account > Billing history for plans) as downloadable PDFs. If you need a company name or VAT number added, reply with the details and we'll reissue it within 1 business day.",
            "Sure! I've sent a copy of the invoice to {email}; you can also download it any time from Account > Orders in the app.",
        ],
    },
    "upgrade_plan": {
        "user": [
            "I want to upgrade from {plan} to {plan2}.",
            "how do i get more days of video history? on {plan} right now",
            "Can I add professional monitoring to my plan?",
            "Upgrade me to {plan2} please, I just added another {cam}.",
            "what's the difference between {plan} and {plan2}, and how do I switch",
            "I need my plan to cover more than one camera. What should I upgrade to?",
            "If I upgrade mid-month, do I pay the full price for {plan2}?||0,2",
            "Interested in moving up to {plan2}. Is there a discount if I pay yearly?",
            "We've put a {cam} on the garage too, so our current {plan} isn't enough anymore — what's the next tier and how do I get it?",
            "Thinking of going from {plan} to {plan2}. Will my saved clips carry over if I do?",
            "how much more is {plan2} per month vs what i pay now",
        ],
        "reply": [
            "Great choice! You can switch from {plan} to {plan2} under Account > Subscription > Change plan; the upgrade applies straight away and you'll only pay the prorated difference for the rest of this billing period.",
            "Happy to help! {plan2} adds longer video history and covers more cameras — change it under Account > Subscription > Change plan, your existing clips are kept, and yearly billing saves you two months' fees.",
            "Sure! Upgrades take effect immediately and are prorated, so you only pay the difference for the days left in your billing period; open Account > Subscription > Change plan to pick the plan that fits.",
        ],
    },
    "product_setup_help": {
        "user": [
            "How do I set up my new {device}?",
            "just got the {device}, not sure how to connect it to the app",
            "Setting up the {device} and I'm stuck at the QR code step.",
            "Can you walk me through installing the {device}? The manual is confusing.",
            "how do i add a second {device} to my home in the app",
            "I'm not very techy — what's the first thing I do with the {device} out of the box?",
            "The app doesn't find my {device} when I tap Add device.",
            "Help setting up {device} pls, the light is just blinking blue",
            "My elderly mum received a {device} as a gift and neither of us can work out how to get it going. Where do we begin?",
            "Do I need the Lumora Hub for the {cam}, or can it be paired directly with my phone?",
            "what app do I download for the {device} and does it need an account",
        ],
        "reply": [
            "Welcome to Lumora! Open the Lumora Home app, tap + > Add device, scan the QR code on the back of your {device} and follow the on-screen steps; keep your phone within a few feet of the device while it pairs.",
            "Happy to help you get set up! Make sure the {device} is powered on and blinking, then in the Lumora Home app tap + > Add device and scan its QR code; our step-by-step video guide is under Help > Setup guides if you get stuck.",
            "Let's get your {device} running! Download the Lumora Home app, sign in or create an account, then tap + > Add device and follow the prompts — if it isn't found, hold the reset button for 10 seconds and try again.",
        ],
    },
    "wifi_connection_issue": {
        "user": [
            "My {device} won't connect to wifi.",
            "the {device} keeps dropping off the wifi every night",
            "Can't get the {device} onto my home network, it says 'network not found'.",
            "{device} shows offline in the app even though my wifi is fine.",
            "why won't my {device} connect to my 5GHz network??||0",
            "We changed our router and now none of our Lumora devices connect.",
            "The {device} connects for a few minutes then disconnects. Router is right next to it.",
            "wifi setup fails at the last step for my {device}, tried {n} times",
            "Ever since the internet provider came round, the {device} won't come back online.",
            "Is there a trick to getting the {device} to see my wireless network? It just isn't listed.",
            "device offline again. it's the {device}. wifi works on everything else in the house",
        ],
        "reply": [
            "Sorry it won't connect! The {device} needs a 2.4 GHz network for setup, so make sure that band is switched on, restart your router, then hold the device's reset button for 10 seconds and add it again in the app.",
            "Let's get it back online. Move the {device} within about 10 m of the router, restart both, and check the app shows a strong signal; if it still drops, reply with your router model and we'll troubleshoot it with you.",
            "Sorry for the trouble! Lumora devices need a 2.4 GHz Wi-Fi network, so check that band is switched on and restart your router, then reset each device (hold its button for 10 seconds) and add it again with + > Add device in the app.",
            "Thanks for the details! After a router change, each device needs re-adding: reset the {device} (hold the button for 10 seconds), then tap + > Add device and choose your new network — remember it has to be the 2.4 GHz band.",
        ],
    },
    "firmware_update_problem": {
        "user": [
            "The firmware update on my {device} is stuck at {n}0%.",
            "my {device} failed to update to {version} and now it won't boot",
            "Update keeps failing on the {device}. Says 'update error, try again later'.",
            "After updating to firmware {version} my {device} has been acting weird.",
            "how do i manually update the firmware on the {device}?",
            "the {device} is stuck in a boot loop after last night's update",
            "Firmware {version} broke my {device}. Can I roll back?||2",
            "app says an update is available for the {device} but tapping install does nothing",
            "Ever since the automatic update went through, the {device} keeps freezing and I have to unplug it.",
            "The progress bar for the {device} software update hasn't moved in hours — is it safe to pull the plug?||1",
            "version {version} won't install on my {device}, it just errors out",
        ],
        "reply": [
            "Sorry about the update trouble! Keep the {device} plugged in and online, restart it, then retry from Device settings > Firmware in the app; if it still fails, reply with its serial number and we can push {version} to it from our side.",
            "I'm sorry it's stuck. Unplug the {device} for 30 seconds, plug it back in and retry the update from Device settings > Firmware; if it won't start up at all, hold the reset button for 10 seconds to restore it, and reply here if that doesn't help.",
            "Thanks for letting us know! Firmware can't be rolled back, but our team fixes issues quickly — please restart the {device}, make sure it's on the latest version in Device settings > Firmware, and reply with a short description so we can log it with engineering.",
        ],
    },
    "compatibility_question": {
        "user": [
            "Does the {device} work with {eco}?",
            "is the {device} compatible with my {phone}?||1",
            "Will the {cam} work without the Lumora Hub?||5",
            "can i control the {device} with {eco}? thinking of buying one",
            "Does the {accessory} fit the {device}?||4",
            "Quick question before I buy: is the {device} Matter compatible?",
            "Will the Lumora Home app run on an older {phone}?||3",
            "Do your devices integrate with {eco}? I have a bunch of other smart stuff already.",
            "Before I order, could you confirm whether the {device} can be linked to my {eco} setup?",
            "My partner has the app on their {phone} and I'm on something different — can we both control the {device}?",
            "would a {device} play nicely with {eco} or do i need extra gear",
        ],
        "reply": [
            "Great question! The {device} supports Matter, so it works with {eco} as well as Alexa, Google Home, Apple Home and SmartThings — just link it under Settings > Integrations in the Lumora Home app.",
            "Yes! The Lumora Home app runs on iOS 16 or later and Android 10 or later, so your {phone} is fine, and the {device} connects directly over Wi-Fi without needing a hub.",
            "Happy to help! Every Lumora device works with Matter, Alexa, Google Home, Apple Home and SmartThings, and the full compatibility list for the {device} is on its product page under Compatibility.",
            "Great question! All Lumora devices support Matter and work with Alexa, Google Home, Apple Home and SmartThings, and the Lumora Home app runs on iOS 16 or later and Android 10 or later; link other services under Settings > Integrations.",
            "Good question! The {accessory} is designed for our current hardware, and the product page lists exactly which devices it fits — reply with your model if you'd like me to double-check the {device}.",
            "Yes! The {device} connects straight to your Wi-Fi and works without a Lumora Hub; a hub is only needed if you want automations to keep running locally when your internet is down.",
        ],
    },
    "price_match": {
        "user": [
            "{competitor} has the {product} for {lower}. Will you price match?",
            "i bought the {product} for {price} and now it's {lower} at {competitor}. refund the difference?",
            "Do you do price matching? Saw the {product} cheaper at {competitor}.",
            "The {product} dropped to {lower} on your own site a week after I bought it. Can I get the difference back?",
            "price match request: {product}, {competitor}, {lower}",
            "Paid full price for the {product} (order {order}) and it's now on sale. Any chance of a partial refund?",
            "Can you match {competitor}'s price of {lower} for the {product}?",
            "Your competitor is selling the same {product} for {lower}. Match it and I'll order today.",
            "Just noticed {competitor} listing the {product} at {lower}, which is less than the {price} I paid you {when}. Is there a policy for that?",
            "If I find the {product} at a lower price somewhere reputable, will Lumora knock the difference off?",
            "saw the {product} discounted at {competitor} — can I claim the price difference on order {order}?",
        ],
        "reply": [
            "We'd be happy to! We match the price of authorised retailers like {competitor} within 14 days of purchase when the identical item is in stock — reply with a link or screenshot and we'll refund the difference to your original payment method.",
            "Good news: if our own price drops within 14 days of your purchase, we refund the difference. Reply with your order number and I'll credit the {product} difference within 3–5 business days.",
            "Thanks for checking! Price matches apply within 14 days of purchase for the same item from an authorised retailer; send a screenshot of the {lower} offer and I'll process the difference for order {order} straight away.",
        ],
    },
    "promo_code_problem": {
        "user": [
            "My promo code {code} isn't working at checkout.",
            "the discount code {code} says invalid?? got it in your email",
            "I forgot to apply {code} to order {order}. Can you add the discount?",
            "Why won't {code} work on the {product}?",
            "promo code not applying, tried {n} times",
            "Code {code} was accepted but the total didn't change.",
            "Is {code} still valid? It says expired but the email says it runs till Sunday.",
            "Can I use two discount codes on the same order?||2",
            "The voucher from your newsletter gets rejected every time I enter it on the {product} page.",
            "I placed order {order} and only afterwards remembered I had {code} — is it too late to get that money off?",
            "checkout wont accept my coupon {code}, what's wrong with it",
        ],
        "reply": [
            "Sorry the code's giving you trouble! Codes are case-sensitive, one per order, and don't apply to items already on sale, which is the usual culprit — if {code} should be valid, reply with a screenshot and I'll apply the discount manually.",
            "I can help with that. I've checked {code} and, as long as it hasn't expired, I'll refund the discount to order {order} within 3–5 business days — you'll get an email once it's done.",
            "Thanks for flagging it! Only one code can be used per order, and codes can't be combined with sale prices; reply with the code and your order number and I'll make sure you get the discount you're entitled to.",
        ],
    },
    "gift_card_balance": {
        "user": [
            "How do I check my gift card balance?",
            "what's left on gift card {gc}?",
            "I got a Lumora gift card for Christmas, how much is on it? Number is {gc}.",
            "Does my gift card expire? Haven't used it yet.||0,2",
            "gift card balance check pls {gc}",
            "Can I use my gift card to pay for a {plan_any} subscription?||2",
            "The gift card isn't being accepted at checkout, can you tell me if there's still money on it?",
            "I used part of my gift card on a {product}. How much credit is left?",
            "My aunt sent me an e-gift card but I can't tell what value it still holds — the code is {gc}.",
            "Is there somewhere in the app that shows the remaining credit on a Lumora gift voucher?",
            "how much is left on my giftcard, i spent some of it {when}",
        ],
        "reply": [
            "Happy to help! You can see your gift card balance under Account > Gift cards in the Lumora Home app, or by entering the code at checkout — Lumora gift cards never expire.",
            "Sure! I've checked {gc} and emailed the remaining balance to the address on your account; you can also add the card under Account > Gift cards to see it any time.",
            "Great question! Gift cards never expire and can be used on any hardware or accessory, but not on Protect subscriptions; add yours under Account > Gift cards to see the exact balance.",
        ],
    },
    "loyalty_points": {
        "user": [
            "How many Lumora Rewards points do I have?",
            "i didnt get points for my last order {order}",
            "How do I redeem my {points} rewards points?",
            "My loyalty points disappeared from my account!",
            "do points expire? I have {points} saved up",
            "How many points do I earn on a {product}?||0",
            "Can I use my points toward the {product}?",
            "Points from order {order} still show as pending after {days} days.",
            "What are my {points} Rewards points actually worth in money, and where do I spend them?",
            "I was told I'd get bonus points for buying the {device} but my balance never went up.",
            "rewards balance looks wrong, it should be way higher",
        ],
        "reply": [
            "Thanks for being a Lumora Rewards member! You earn 1 point per $1 spent, points show as pending until the 30-day return window closes, and you can see and redeem them at checkout or under Account > Rewards.",
            "Great news: your {points} points are worth {points_value}, since every 100 points equals $1 off — they're applied at checkout and stay valid as long as you make a purchase at least once every 12 months.",
            "Sorry about the missing points! Points for order {order} post once the 30-day return window closes; if they still aren't there after that, reply here and I'll add them manually.",
        ],
    },
    "bulk_business_order": {
        "user": [
            "We need {qty} {device}s for {biz}. Do you offer volume pricing?",
            "Hi, I'm buying for {biz} and would like a quote for {qty} units of the {device}.",
            "do you have a business account option? need {qty} {device}s",
            "Can we get invoiced terms for a bulk order of {qty} {product}s?",
            "Looking to kit out {biz} with {device}s, maybe {qty} of them. Who do I talk to?",
            "bulk discount for {qty} {product}s?",
            "We're a reseller interested in stocking your {device}. What are your wholesale terms?",
            "Is there a maximum order quantity? We'd like {qty} {device}s delivered to one site.",
            "I manage facilities for {biz} and we're planning to install around {qty} {device}s next quarter — could someone from sales get in touch?",
            "Could we get a formal quotation, with delivery, for {qty} of the {product} for {biz}?",
            "Do you sell to companies directly? After {qty} {device}s, ideally with installation support.",
        ],
        "reply": [
            "Thanks for thinking of Lumora for {biz}! Orders of 10 or more units qualify for volume pricing through Lumora for Business — reply with the quantity, models and delivery location and our business team will send a quote within 1 business day.",
            "We'd love to help! I've passed your request for {qty} units to our Lumora for Business team, who'll email you a tailored quote, delivery options and invoicing terms within 1 business day.",
            "Great to hear! For business and reseller orders, our Lumora for Business team handles volume pricing and account terms — reply with your company name and contact number and they'll be in touch within 1 business day.",
        ],
    },
    "stock_availability": {
        "user": [
            "When will the {product} be back in stock?",
            "is the {device} out of stock everywhere? can't order it",
            "Your site says the {product} is sold out. Any restock date?",
            "Will you get more {product}s before Christmas?",
            "Can I pre-order the {device} while it's unavailable?",
            "the {product} has been 'coming soon' for weeks, is it discontinued??",
            "Do you know if the {product} is available in white?",
            "Is there any stock of the {device} in a UK warehouse?",
            "I've been refreshing the {product} page all week and it still says unavailable — any idea when that changes?",
            "Has the {device} been discontinued, or is it just temporarily sold out?",
            "any chance of getting a {product} sooner if i order by phone?||2",
        ],
        "reply": [
            "Thanks for your interest in the {product}! It's temporarily sold out — tap 'Notify me' on the product page and we'll email you the moment it's back, usually within 2–3 weeks.",
            "Good question! The {product} isn't discontinued, just between shipments; sign up with 'Notify me' on its page and you'll be first to know when stock lands.",
            "Sorry it's sold out right now! Restocks go to our website first, so 'Notify me' on the {product} page is the quickest way to get one — I'm afraid we can't take orders by phone.",
        ],
    },
    "complaint_about_agent": {
        "user": [
            "The agent I spoke to, {agent}, was really rude to me.",
            "I want to complain about the support person on chat {when}. They just ended the chat on me.",
            "Your rep {agent} promised a callback that never happened.",
            "Terrible service from your team. {agent} didn't listen and gave me wrong information.",
            "i was on hold for an hour then the agent hung up. unacceptable",
            "I'd like to make a formal complaint about how I was treated on the phone {when}.",
            "{agent} told me my refund was processed but it wasn't. I feel lied to.",
            "The person on live chat was dismissive and kept copy-pasting the same answer.",
            "Whoever answered my call {when} talked over me the whole time and I got nowhere. I'd like this escalated.",
            "Not happy with {agent} from your support desk — I was promised a replacement and it never materialised.",
            "who do i speak to about a staff member being unprofessional",
        ],
        "reply": [
            "I'm really sorry about your experience with {agent} — that's not the standard we expect. I've escalated this to our support team lead, who will review the conversation and contact you within 1 business day to put things right.",
            "I'm so sorry you were treated that way. I've logged a formal complaint and a team lead will personally review it and get back to you within 1 business day; in the meantime, reply with anything that's still unresolved and I'll take care of it.",
            "Thank you for telling us, and I'm sorry we let you down. I've shared your feedback with the team leader, and they'll reach out within 1 business day; I'm also happy to pick up your original issue right now.",
        ],
    },
    "feedback_praise": {
        "user": [
            "Just wanted to say I love my {device}! Setup was so easy.",
            "The support team was amazing yesterday, {agent} sorted everything in 5 minutes.",
            "great product, the {device} works perfectly with the rest of my setup :)",
            "Been using Lumora for {years} years now and still really happy. Keep it up!",
            "Thank you {agent}! Really appreciated your patience with me.",
            "the new app update is so much faster, well done",
            "Honestly the best smart home stuff I've bought. The {device} is fantastic.",
            "No problem to report, just a thank you for the quick delivery of my {product}.",
            "Wanted to pass on a compliment: my {device} has run flawlessly since I installed it, and the app is a joy to use.",
            "Please tell {agent} they did a brilliant job — my issue was fixed before I'd even finished my coffee.",
            "shoutout to your team, the {product} arrived early and works a treat",
        ],
        "reply": [
            "Thank you so much — that really made our day! I'll share your kind words about {agent} with the team, and if you ever need anything, we're right here.",
            "We're thrilled you're enjoying your {device}! Thanks for taking the time to tell us — if you'd like to share it with others, a review on our website helps other customers too.",
            "Thank you for the lovely message! I've passed it on to our team, and we're here whenever you need us.",
        ],
    },
}

# Wrapping: greetings, tone openers, extra context, closers, sign-offs.
GREETINGS = ["", "", "", "Hi,", "Hello,", "hey,", "Hi there,", "Hi Lumora team,", "Good morning,",
             "Good evening.", "Hiya!", "Dear Lumora support,\n", "To whom it may concern,\n", "Hello there!",
             "yo", "Morning!", "Hi,\n"]
TONES = {
    "neutral": [""],
    "polite": ["Hope you're well.", "Sorry to bother you.", "Hoping you can help.",
               "I'd really appreciate some help with something.", "Thanks in advance for looking at this."],
    "angry": ["This is ridiculous.", "I'm really fed up.", "Third time I'm writing about this!!",
              "Absolutely unacceptable.", "Not happy at all.", "Seriously?!",
              "I'm starting to regret buying from you."],
    "confused": ["Not sure if this is the right place to ask, but", "I'm a bit confused.",
                 "Sorry if this is a silly question.", "Can't work this out on my own.",
                 "I'm not very good with this stuff."],
    "hurried": ["Quick one:", "quick q -", "In a rush, so short version:", "urgent:"],
}
TONE_WEIGHTS = [("neutral", 5), ("polite", 3), ("angry", 2), ("confused", 2), ("hurried", 1)]
# intents where some tones would read oddly
TONES_EXCLUDED = {"feedback_praise": {"angry", "confused", "hurried"},
                  "compatibility_question": {"angry"}, "bulk_business_order": {"angry"},
                  "upgrade_plan": {"angry"}}
CONTEXT = ["It was a birthday present for my mum.", "I've been a customer for a few years now.",
           "I already tried restarting everything.", "My partner set up the account originally.",
           "I'm travelling next week so would like this sorted quickly.", "This is for our holiday home.",
           "I bought it during the sale.", "We have a newborn so I'm not getting much sleep lol.",
           "I checked the FAQ but couldn't find anything.", "I'm writing from my work email.",
           "I called earlier but the line was busy.", "English isn't my first language, sorry."]
CLOSERS = ["", "", "", "Thanks!", "Thank you.", "Cheers", "Please advise.", "Appreciate the help.",
           "Let me know asap.", "thx", "Waiting for your reply.", "Sort it out please.", "ty"]
SIGNOFF_CLOSERS = ["Many thanks,", "Kind regards,", "Thanks,", "Best,", "Cheers,", ""]
FOLLOW_NEW = ["Thanks! One more thing —", "Ok thanks. Also,", "Great. While I have you,",
              "thanks. another question:", "Got it. Separate issue:", "Appreciated. Also",
              "OK. And one other thing:", "Thanks for that. Oh and"]
FOLLOW_ORDER = ["Sure, it's {order}.", "order number is {order}", "It's {order}, thanks.",
                "Here you go: {order}", "{order}", "Found it — {order}.", "the number is {order} i think"]

KITS = [("Sentinel Cam Outdoor", "mounting screws"), ("Sentinel Cam Outdoor", "wall plate"),
        ("Sentinel Video Doorbell", "wedge mount"), ("Sentinel Video Doorbell", "release pin"),
        ("Sentinel Video Doorbell", "drill template"), ("Keystone Smart Lock", "drill template"),
        ("Keystone Smart Lock", "mounting screws"), ("Aura Smart Thermostat", "wall plate"),
        ("Aura Smart Thermostat", "mounting screws"), ("Glow Lightstrip 5m", "connector clips"),
        ("Glow Lightstrip 2m", "power adapter"), ("Lumora Hub Mini", "USB-C cable"),
        ("Lumora Hub Pro", "power adapter"), ("Sentinel Cam Indoor", "USB-C cable"),
        ("Tempo Soundbar", "power adapter"), ("Sentinel Floodlight Cam", "mounting screws"),
        ("Aura Room Sensor", "battery"), ("Glow Floor Lamp", "quick start guide"),
        ("Tempo Speaker", "power adapter"), ("Sentinel Cam Indoor", "quick start guide")]

MISSPELL = {"received": "recieved", "definitely": "definately", "address": "adress",
            "separate": "seperate", "until": "untill", "because": "becuase", "really": "realy",
            "please": "plese", "account": "acount", "business": "buisness", "password": "pasword",
            "subscription": "subscribtion", "delivery": "delivary", "warranty": "waranty",
            "connect": "conect", "which": "wich", "the": "teh", "immediately": "immediatly"}


def typo(rng, text, n):
    toks = text.split(" ")
    idx = [i for i, t in enumerate(toks)
           if len(t) >= 4 and t.isalpha() and not any(c.isdigit() for c in t)]
    rng.shuffle(idx)
    for i in idx[:n]:
        w = toks[i]
        low = w.lower()
        if low in MISSPELL and rng.random() < 0.6:
            toks[i] = MISSPELL[low]
            continue
        k = rng.randrange(1, len(w) - 1)
        op = rng.choice(["swap", "drop", "double"])
        if op == "swap":
            w = w[:k] + w[k + 1] + w[k] + w[k + 2:]
        elif op == "drop":
            w = w[:k] + w[k + 1:]
        else:
            w = w[:k] + w[k] + w[k:]
        toks[i] = w
    return " ".join(toks)


def roughen(rng, text, tone):
    """Style a customer message: case, punctuation and typos."""
    if rng.random() < 0.28:
        text = typo(rng, text, rng.choice([1, 1, 2, 3]))
    if rng.random() < 0.15:
        text = text.replace("'", "")
    if rng.random() < (0.35 if tone == "hurried" else 0.15):
        text = text.lower()
    if tone == "angry" and rng.random() < 0.35:
        text = text.rstrip(".") + rng.choice(["!!", "!!!", "?!"])
    return text


def join(a, b):
    """Join two pieces of a message, adding a full stop where a casual core lacks one."""
    if not a:
        return b
    if a.endswith("\n"):
        return a + b
    if a[-1].isalnum() or a[-1] == "}":
        return a + ". " + b
    return a + " " + b


def wrap(rng, core, tone, with_name):
    text = ""
    g = rng.choice(GREETINGS)
    if g and not re.match(r"(?i)(hi|hello|hey|hiya)\b", core):
        text = g if g.endswith("\n") else g
    opener = rng.choice(TONES[tone])
    if opener:
        text = (text + " " + opener).strip() if not text.endswith("\n") else text + opener
    text = (text + (" " if text and not text.endswith("\n") else "") + core)
    if rng.random() < 0.18:
        text = join(text, rng.choice(CONTEXT))
    if with_name:
        c = rng.choice(SIGNOFF_CLOSERS)
        if c:
            text = join(text, "") .rstrip() + "\n\n" + c + "\n{name}"
        else:
            text += rng.choice(["\n", " - ", "\n— "]) + "{name}"
        return text
    c = rng.choice(CLOSERS)
    if tone == "angry" and c in ("Thanks!", "Cheers", "thx", "ty"):
        c = "Sort it out please."
    if c:
        text = join(text, c)
    return text


def effective(used):
    """Slots a reply may use: a {device} also counts as the {product}."""
    used = set(used)
    if "device" in used:
        used.add("product")
    if "cam" in used:
        used |= {"device", "product"}
    return used


def split_core(core):
    """A user template may end with '||i,j': the replies that answer it best."""
    if "||" in core:
        text, idx = core.split("||")
        return text, [int(i) for i in idx.split(",")]
    return core, None


def choose_reply(rng, spec, used, intent, prefer=None):
    used = effective(used)
    replies = spec["reply"]
    if prefer:
        pool = [replies[i] for i in prefer if fields(replies[i]) <= used]
        if pool:
            return rng.choice(pool)
    if "ask" in spec and "order" not in used:
        pool = spec["ask"] + [r for r in replies
                              if fields(r) and fields(r) <= used and "order" not in fields(r)]
    else:
        pool = [r for r in replies if fields(r) <= used]
        with_order = [r for r in pool if "order" in fields(r)]
        if "order" in used and with_order:
            pool = with_order
    if not pool:
        raise ValueError("no reply fits %s with slots %s" % (intent, sorted(used)))
    return rng.choice(pool)


def fill(tmpl, slots, reply=False, used=()):
    vals = dict(slots)
    if reply:
        vals["order"] = slots["order_c"]
        if "cam" in used:
            vals["device"] = slots["cam"]
        if "device" in used or "cam" in used:
            vals["product"] = vals["device"]
    return tmpl.format(**vals)


def support_turn(rng, intent, split, slots, first_turn=True):
    spec = INTENTS[intent]
    if intent == "missing_parts":
        slots = dict(slots)
        slots["device"], slots["part"] = rng.choice(KITS)
    cores = spec["user"]
    pool = cores[-EVAL_CORES:] if split == "eval" else cores[:-EVAL_CORES]
    core, prefer = split_core(rng.choice(pool))
    tones = [(t, w) for t, w in TONE_WEIGHTS if t not in TONES_EXCLUDED.get(intent, ())]
    tone = rng.choices([t for t, _ in tones], [w for _, w in tones])[0]
    if first_turn:
        with_name = rng.random() < 0.2
        user_t = wrap(rng, core, tone, with_name)
    else:
        with_name = False
        user_t = core
    used = fields(user_t)
    user = roughen(rng, fill(user_t, slots), tone)
    reply_t = choose_reply(rng, spec, used, intent, prefer)
    reply = fill(reply_t, slots, reply=True, used=used)
    if with_name and rng.random() < 0.5:
        reply = "Hi %s! %s" % (slots["name"], reply)
    return user, "Intent: %s\n%s" % (intent, reply), used


def support_record(rng, intent, split, multi):
    slots = support_slots(rng)
    if not multi:
        u, a, _ = support_turn(rng, intent, split, slots)
        return record(SUPPORT_SYSTEM, [(u, a)], intent)
    spec = INTENTS[intent]
    if "ask" in spec and rng.random() < 0.5:
        # first turn without an order number, the assistant asks, the customer answers
        cores = spec["user"]
        pool = cores[-EVAL_CORES:] if split == "eval" else cores[:-EVAL_CORES]
        pool = [c for c in pool if "order" not in fields(c)]
        core, _ = split_core(rng.choice(pool))
        tone = rng.choice(["neutral", "polite", "confused", "angry"])
        u1_t = wrap(rng, core, tone, False)
        u1 = roughen(rng, fill(u1_t, slots), tone)
        a1 = "Intent: %s\n%s" % (intent, fill(rng.choice(spec["ask"]), slots, reply=True))
        u2 = fill(rng.choice(FOLLOW_ORDER), slots)
        used = fields(u1_t) | {"order"}
        pool2 = [r for r in spec["reply"] if fields(r) <= effective(used) and "order" in fields(r)]
        a2 = "Intent: %s\n%s" % (intent, fill(rng.choice(pool2), slots, reply=True, used=used))
        return record(SUPPORT_SYSTEM, [(u1, a1), (u2, a2)], intent)
    # a different first request, then the labelled request as a follow-up
    first = rng.choice([i for i in sorted(INTENTS) if i != intent])
    u1, a1, _ = support_turn(rng, first, split, slots)
    slots2 = support_slots(rng)
    slots2["order"], slots2["order_c"] = slots["order"], slots["order_c"]
    u2, a2, _ = support_turn(rng, intent, split, slots2, first_turn=False)
    lead = rng.choice(FOLLOW_NEW)
    u2 = lead + " " + (u2[0].lower() + u2[1:] if not u2[:2].isupper() else u2)
    return record(SUPPORT_SYSTEM, [(u1, a1), (u2, a2)], intent)


def quotas(labels, total, rng):
    base, extra = divmod(total, len(labels))
    bonus = set(rng.sample(labels, extra))
    return {l: base + (1 if l in bonus else 0) for l in labels}


def build_split(rng, labels, total, make, split, guard, multi_share=0.0, stratify=False):
    """Draw `total` records, balanced over labels, rejecting prompts too close
    to the guard set (eval prompts, when building train) or to each other.
    A share of the records gets the alternative kind (support: two user turns;
    legal: a question instead of classification), per label when stratified."""
    q = quotas(labels, total, rng)
    order = [l for l in labels for _ in range(q[l])]
    rng.shuffle(order)
    if stratify:
        multi_idx = set()
        for l in labels:
            idx = [i for i, x in enumerate(order) if x == l]
            multi_idx |= set(rng.sample(idx, int(round(len(idx) * multi_share))))
    else:
        n_multi = int(round(total * multi_share))
        multi_idx = set(rng.sample(range(total), n_multi)) if n_multi else set()
    mine = Similarity()
    out = []
    for i, label in enumerate(order):
        for attempt in range(400):
            rec = make(rng, label, split, i in multi_idx)
            p = prompt_text(rec)
            if mine.contains(p) or (guard is not None and guard.contains(p)):
                continue
            if guard is not None and guard.max_sim(p) >= MAX_SIM:
                continue
            if mine.max_sim(p) >= MAX_SIM_SPLIT:
                continue
            break
        else:
            raise RuntimeError("could not draw a distinct %s record for %s" % (split, label))
        mine.add(p)
        out.append(rec)
    return out


# --------------------------------------------------------------------------
# legal: contract clauses, classification and questions about a clause
# --------------------------------------------------------------------------

LEGAL_SYSTEM = ("You are a contract analyst: classify contract clauses and answer questions "
                "about them using only the clause text.")

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def numword(n):
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + ("-" + _ONES[o] if o else "")
    h, r = divmod(n, 100)
    return _ONES[h] + " hundred" + (" and " + numword(r) if r else "")


def dur(n, unit, formal):
    u = unit if n == 1 else unit + "s"
    if formal:
        return "%s (%d) %s" % (numword(n), n, u)
    return "%d %s" % (n, u)


def poss(phrase):
    return phrase + ("'" if phrase.endswith("s") else "'s")


# (law, courts, UK spelling, currency symbol, currency name, data-protection law, region)
JURISDICTIONS = [
    ("England and Wales", "the courts of England and Wales", True, "£", "pounds sterling",
     "UK GDPR and the Data Protection Act 2018", "the United Kingdom"),
    ("Scotland", "the Court of Session in Edinburgh", True, "£", "pounds sterling",
     "UK GDPR and the Data Protection Act 2018", "the United Kingdom"),
    ("the State of New York", "the state and federal courts located in New York County, New York",
     False, "$", "US dollars", "applicable US state privacy laws", "the United States"),
    ("the State of Delaware", "the state and federal courts located in Wilmington, Delaware", False,
     "$", "US dollars", "applicable US state privacy laws", "the United States"),
    ("the State of California", "the state and federal courts in San Francisco County, California",
     False, "$", "US dollars", "California Consumer Privacy Act", "the United States"),
    ("the State of Texas", "the state courts of Travis County, Texas", False, "$", "US dollars",
     "Texas Data Privacy and Security Act", "the United States"),
    ("the State of Illinois", "the courts of Cook County, Illinois", False, "$", "US dollars",
     "applicable US state privacy laws", "the United States"),
    ("the State of Washington", "the courts of King County, Washington", False, "$", "US dollars",
     "applicable US state privacy laws", "the United States"),
    ("Ireland", "the courts of Ireland", True, "€", "euros",
     "General Data Protection Regulation (EU) 2016/679", "the European Economic Area"),
    ("the Netherlands", "the competent court in Amsterdam", True, "€", "euros",
     "General Data Protection Regulation (EU) 2016/679", "the European Economic Area"),
    ("Germany", "the courts of Munich", True, "€", "euros",
     "General Data Protection Regulation (EU) 2016/679", "the European Economic Area"),
    ("Switzerland", "the courts of the Canton of Zurich", True, "CHF ", "Swiss francs",
     "Swiss Federal Act on Data Protection", "Switzerland"),
    ("the Republic of Singapore", "the courts of Singapore", True, "S$", "Singapore dollars",
     "Personal Data Protection Act 2012", "Singapore"),
    ("New South Wales, Australia", "the courts of New South Wales", True, "A$", "Australian dollars",
     "Privacy Act 1988 (Cth)", "Australia"),
    ("the Province of Ontario and the federal laws of Canada applicable in it",
     "the courts of Ontario sitting in Toronto", False, "C$", "Canadian dollars",
     "Personal Information Protection and Electronic Documents Act", "Canada"),
]

DEFAULT_ROLES = [("Supplier", "Customer"), ("Provider", "Client"), ("Licensor", "Licensee"),
                 ("Service Provider", "Customer"), ("Vendor", "Purchaser"), ("Contractor", "Company"),
                 ("Consultant", "Client"), ("Distributor", "Principal")]
NAMED = ["Kestrel Analytica", "Brightwater Food Co", "Halden Shipping", "Orrin Software",
         "Maple & Finch", "Tidewater Health", "Corvid Lab", "Northgate Retail", "Ashby Engineering",
         "Lumen Freight", "Quarry Hill Media", "Veldt Pharma", "Pinecrest Hotel Group", "Sable Automation",
         "Ridgeway Capital", "Osprey Data", "Fennick & Rowe", "Blue Heron Studio", "Carrow Mining",
         "Solent Marine", "Juniper Biotech", "Westmark Telecom", "Alder Creek Farm Co", "Nimbus Cloud"]
AGREEMENTS = ["Agreement", "Agreement", "Agreement", "Master Services Agreement", "License Agreement",
              "Supply Agreement", "Consulting Agreement", "Subscription Agreement",
              "Distribution Agreement", "Framework Agreement"]
SPELLING = [("authorize", "authorise"), ("authorized", "authorised"), ("authorization", "authorisation"),
            ("organization", "organisation"), ("organizational", "organisational"),
            ("organizations", "organisations"), ("favor", "favour"), ("labor", "labour"),
            ("defense", "defence"), ("recognized", "recognised"), ("license", "licence"),
            ("License", "Licence"), ("endeavors", "endeavours"), ("endeavor", "endeavour"),
            ("behavior", "behaviour"), ("fulfill", "fulfil"), ("canceled", "cancelled"),
            ("anonymized", "anonymised"), ("minimize", "minimise"), ("materialize", "materialise"),
            ("offense", "offence"), ("center", "centre"), ("Organization", "Organisation"),
            ("judgment", "judgment"), ("color", "colour"), ("honor", "honour")]
TERRITORIES = ["the United Kingdom", "England and Wales", "the European Union", "the United States",
               "the State of California", "Greater London", "the Republic of Ireland", "Canada",
               "any country in which the Company traded in the preceding 12 months", "Singapore",
               "a 50-mile radius of the Company's head office", "Germany, Austria and Switzerland",
               "the Benelux countries", "New South Wales"]
LINES = ["payroll software", "industrial adhesives", "veterinary supplies", "specialty coffee roasting",
         "freight forwarding", "online tutoring services", "solar panel installation",
         "dental practice management software", "commercial cleaning services", "craft brewing",
         "cybersecurity consulting", "medical imaging equipment", "event ticketing"]
DELIVERABLES = ["Software", "Platform", "Licensed Material", "Work Product", "System",
                "Service Offering", "Application"]
ARB_RULES = [  # (full name, administering institution, short rule name)
    ("ICC Rules of Arbitration", "the International Chamber of Commerce", "Rules of Arbitration"),
    ("LCIA Arbitration Rules", "the London Court of International Arbitration", "Arbitration Rules"),
    ("SIAC Rules", "the Singapore International Arbitration Centre", "Arbitration Rules"),
    ("Commercial Arbitration Rules of the American Arbitration Association",
     "the American Arbitration Association", "Commercial Arbitration Rules"),
    ("JAMS Comprehensive Arbitration Rules and Procedures", "JAMS",
     "Comprehensive Arbitration Rules and Procedures"),
    ("UNCITRAL Arbitration Rules", None, None),
    ("Rules of the Netherlands Arbitration Institute", "the Netherlands Arbitration Institute",
     "Arbitration Rules"),
    ("Swiss Rules of International Arbitration", "the Swiss Arbitration Centre",
     "Swiss Rules of International Arbitration"),
]
SEATS = ["London", "New York", "Singapore", "Paris", "Geneva", "Stockholm", "Hong Kong", "Dublin",
         "Zurich", "Chicago", "Toronto", "The Hague"]
MEDIATION = ["CEDR Model Mediation Procedure", "ICC Mediation Rules", "JAMS International Mediation Rules",
             "Mediation Procedure of the American Arbitration Association"]
SIGNERS = ["authorised representatives", "duly authorized officers", "directors",
           "authorized signatories"]
SUBJECTS = ["supply of the Products", "provision of the Services", "licensing of the Software",
            "distribution of the Goods", "development of the Platform"]
FIELDS_OF_USE = ["the field of veterinary diagnostics", "consumer mobile applications",
                 "the territory of Canada", "non-commercial research", "the aviation sector",
                 "its internal business operations"]


def money(rng, cur, lo, hi, step):
    return "%s%s" % (cur, format(rng.randrange(lo, hi + 1, step), ","))


def legal_facts(rng, c):
    """Every slot any clause template may use, for one clause."""
    formal = c["formal"]
    cur = c["cur"]
    f = {}
    d = lambda n, unit: dur(n, unit, formal)
    f["notice"] = rng.choice([d(30, "day"), d(60, "day"), d(90, "day"), d(45, "day"),
                              d(3, "month"), d(6, "month"), d(14, "day")])
    f["notice_p"] = poss(f["notice"])
    f["cure"] = rng.choice([d(10, "day"), d(14, "day"), d(15, "day"), d(21, "day"), d(30, "day"),
                            d(45, "day"), d(60, "day")])
    f["fee"] = rng.choice([money(rng, cur, 5000, 95000, 2500),
                           "%s of the Fees that would have been payable for the remainder of the Initial Term"
                           % rng.choice(["50%", "25%", "100%", "75%"])])
    f["min_term"] = rng.choice([d(6, "month"), d(12, "month"), d(18, "month"), d(24, "month")])
    f["n"] = numword(rng.choice([2, 3, 4]))
    f["months"] = rng.choice([d(12, "month"), d(6, "month"), d(24, "month"), d(3, "month"),
                              d(18, "month")])
    f["cap"] = money(rng, cur, 50000, 5000000, 25000)
    f["CAP"] = f["cap"]
    f["small"] = money(rng, cur, 5000, 25000, 2500)
    f["mult"] = rng.choice(["two times", "one and a half times", "150% of", "125% of", "three times",
                            "200% of"])
    f["deliv"] = rng.choice(DELIVERABLES)
    f["notify"] = rng.choice([d(5, "day"), d(10, "day"), d(14, "day"), d(30, "day"),
                              d(7, "Business Day")])
    f["years"] = rng.choice([d(2, "year"), d(3, "year"), d(5, "year"), d(7, "year"), d(10, "year"),
                             d(1, "year")])
    f["ret"] = rng.choice([d(10, "day"), d(14, "day"), d(30, "day"), d(5, "Business Day"),
                           d(15, "day")])
    f["dur"] = rng.choice([d(6, "month"), d(9, "month"), d(12, "month"), d(18, "month"),
                           d(24, "month"), d(3, "month")])
    f["territory"] = rng.choice(TERRITORIES)
    f["line"] = rng.choice(LINES)
    f["pct"] = rng.choice(["3%", "5%", "2%", "1%", "10%"])
    f["comp"] = rng.choice(["50%", "60%", "75%", "100%"])
    f["fee_pct"] = rng.choice(["20%", "25%", "30%", "35%", "15%"])
    f["lookback"] = rng.choice([d(6, "month"), d(12, "month"), d(24, "month"), d(18, "month")])
    f["fm_days"] = rng.choice([d(30, "day"), d(60, "day"), d(90, "day"), d(120, "day"),
                               d(3, "month"), d(6, "month"), d(45, "day")])
    f["fm_notice"] = rng.choice([d(2, "Business Day"), d(5, "day"), d(7, "day"), d(10, "day"),
                                 d(14, "day"), d(3, "Business Day")])
    f["period"] = rng.choice(["any twelve-month period", "any calendar quarter", "any calendar year",
                              "any rolling six-month period"])
    f["due"] = rng.choice([d(30, "day"), d(14, "day"), d(45, "day"), d(60, "day"), d(15, "day"),
                           d(10, "Business Day")])
    f["rate_m"] = rng.choice(["1.5%", "1%", "2%", "0.5%"])
    f["rate_a"] = rng.choice(["4%", "8%", "3%", "2%", "5%"])
    f["freq"] = rng.choice(["monthly in arrears", "quarterly in advance", "annually in advance",
                            "monthly in advance", "on completion of each Milestone"])
    f["currency_name"] = c["currency_name"]
    f["disp"] = rng.choice([d(10, "day"), d(14, "day"), d(15, "day"), d(20, "day"), d(7, "day")])
    f["amount"] = money(rng, cur, 500, 40000, 250)
    f["unit"] = rng.choice(["month", "user per month", "day", "site per year", "quarter"])
    f["bank"] = {"£": "the Bank of England", "€": "the European Central Bank", "$": "the Federal Reserve",
                 "A$": "the Reserve Bank of Australia", "C$": "the Bank of Canada",
                 "S$": "the Monetary Authority of Singapore", "CHF ": "the Swiss National Bank"}[cur]
    f["nth"] = rng.choice(["10th", "15th", "20th", "25th", "last"])
    f["work"] = rng.choice(["software", "designs", "reports", "source code", "artwork", "training materials"])
    f["field"] = rng.choice(FIELDS_OF_USE)
    f["wperiod"] = rng.choice([d(90, "day"), d(30, "day"), d(12, "month"), d(6, "month"),
                               d(60, "day"), d(24, "month")])
    rules = rng.choice(ARB_RULES)
    f["rules"] = rules[0]
    adm = rules if rules[1] else rng.choice([r for r in ARB_RULES if r[1]])
    f["admin"], f["rules_short"] = adm[1], adm[2]
    f["seat"] = rng.choice(SEATS)
    f["arbs"] = rng.choice(["a sole arbitrator", "three arbitrators", "one arbitrator",
                            "three (3) arbitrators" if formal else "three arbitrators"])
    f["esc"] = rng.choice([d(30, "day"), d(14, "day"), d(20, "Business Day"), d(45, "day"),
                           d(10, "Business Day"), d(60, "day")])
    f["med"] = rng.choice(MEDIATION)
    f["signers"] = rng.choice(SIGNERS)
    f["subject"] = rng.choice(SUBJECTS)
    f["neg"] = rng.choice([d(30, "day"), d(20, "day"), d(60, "day"), d(10, "Business Day")])
    f["email_time"] = rng.choice(["at the time of transmission", "one Business Day after transmission",
                                  "at 9.00 am on the next Business Day after transmission",
                                  "when it enters the recipient's mail server"])
    f["post_days"] = rng.choice(["second", "third", "fifth"])
    f["confirm"] = rng.choice([d(2, "Business Day"), d(3, "day"), d(5, "Business Day"), d(48, "hour")])
    f["change"] = rng.choice([d(5, "Business Day"), d(10, "day"), d(14, "day"), d(30, "day")])
    f["courier"] = rng.choice([d(3, "Business Day"), d(5, "Business Day"), d(7, "day"), d(2, "day")])
    f["init"] = rng.choice([d(1, "year"), d(2, "year"), d(3, "year"), d(12, "month"), d(36, "month"),
                            d(5, "year"), d(6, "month")])
    f["renew"] = rng.choice([d(1, "year"), d(12, "month"), d(1, "month"), d(2, "year"), d(6, "month")])
    f["RENEW"] = f["renew"].upper()
    f["NOTICE"] = f["notice"].upper()
    f["roll_notice"] = rng.choice([d(1, "month"), d(3, "month"), d(30, "day"), d(90, "day")])
    f["roll_notice_p"] = poss(f["roll_notice"])
    f["rolling"] = rng.choice(["month-to-month", "year-to-year", "quarter-to-quarter"])
    f["increase"] = rng.choice(["3%", "5%", "7%", "4%", "the change in CPI over the prior year"])
    f["reminder"] = rng.choice([d(30, "day"), d(60, "day"), d(45, "day"), d(90, "day")])
    f["audit_freq"] = rng.choice(["once in any twelve (12) month period" if formal else
                                  "once in any 12-month period", "once per calendar year",
                                  "twice in any calendar year", "once per Contract Year"])
    f["audit_notice"] = rng.choice([d(10, "Business Day"), d(30, "day"), d(14, "day"), d(5, "Business Day"),
                                    d(20, "day")])
    f["retain"] = rng.choice([d(2, "year"), d(3, "year"), d(6, "year"), d(7, "year"), d(5, "year")])
    f["shortfall"] = rng.choice(["5%", "3%", "10%", "2%", "7.5%"])
    f["dplaw"] = c["dplaw"]
    f["region"] = rng.choice([c["region"], c["region"], "the European Economic Area", "the United Kingdom"])
    f["hours"] = rng.choice([d(24, "hour"), d(48, "hour"), d(72, "hour"), d(36, "hour")])
    f["consent"] = rng.choice(["specific", "general"])
    f["sub_notice"] = rng.choice([d(30, "day"), d(14, "day"), d(10, "Business Day"), d(60, "day")])
    f["del_days"] = rng.choice([d(30, "day"), d(60, "day"), d(90, "day"), d(14, "day")])
    return f


# Clause categories.  Each form: "s" sentences (templates), "sum" the one-line
# summary for classification, optional "f" extra facts (what the clause says
# in words, usable by questions), "upper" (drafted in capitals) and "roles".
# The last EVAL_FORMS forms of each category are used for evaluation only.
# Each question: "q" phrasings and "a" the answer; it is asked only about
# forms whose text (or "f") provides every slot it uses.
EVAL_FORMS = 3

CATEGORIES = {
    "governing_law": {
        "heads": ["Governing Law", "Applicable Law", "Choice of Law", "Law"],
        "forms": [
            {"s": ["This {agreement} [shall be|is] governed by and [construed|interpreted] in accordance with the [laws|law] of {law}[.|, excluding its conflict of laws principles.]"],
             "sum": "Makes the laws of {law} govern the agreement and its interpretation."},
            {"s": ["This Agreement and any dispute or claim (including non-contractual disputes or claims) arising out of or in connection with it or its subject matter or formation shall be governed by and construed in accordance with the law of {law}.",
                   "Each party irrevocably agrees that {courts} shall have exclusive jurisdiction to settle any such dispute or claim."],
             "f": {"jx": "exclusive"},
             "sum": "Chooses the law of {law} for contractual and non-contractual claims and gives {courts} exclusive jurisdiction."},
            {"s": ["The validity, interpretation and performance of this {agreement} will be governed by the laws of {law}, without giving effect to any choice-of-law or conflict-of-laws rules that would require the application of the laws of another jurisdiction."],
             "sum": "Applies the laws of {law} to the agreement and excludes conflict-of-laws rules that would point elsewhere."},
            {"s": ["This Agreement is governed by the laws of {law}.",
                   "The parties submit to the non-exclusive jurisdiction of {courts}."],
             "f": {"jx": "non-exclusive"},
             "sum": "Sets the laws of {law} as governing law, with non-exclusive jurisdiction for {courts}."},
            {"s": ["The laws of {law} govern this Agreement and all matters arising [from|out of|under] it.",
                   "The United Nations Convention on Contracts for the International Sale of Goods [does not apply to this Agreement|is expressly excluded|shall not apply]."],
             "f": {"cisg": "no"},
             "sum": "Selects the laws of {law} as governing law and excludes the UN Convention on Contracts for the International Sale of Goods."},
            {"s": ["All questions concerning the construction, validity and interpretation of this Agreement shall be determined under the internal laws of {law}.",
                   "Any action relating to this Agreement shall be brought exclusively in {courts}, and each party consents to personal jurisdiction there."],
             "f": {"jx": "exclusive"},
             "sum": "Makes the internal laws of {law} decide all questions on the agreement and requires actions to be brought only in {courts}."},
            # eval
            {"s": ["These terms, and anything connected with them, are subject to the law of {law}.",
                   "If a disagreement comes up, only {courts} may hear it."],
             "f": {"jx": "exclusive"},
             "sum": "Subjects the terms to the law of {law} and reserves disputes to {courts}."},
            {"s": ["Save where mandatory local law provides otherwise, the rights and obligations of the parties under this {agreement} shall be interpreted exclusively according to the substantive law of {law}, to the exclusion of its rules on conflicts of law."],
             "sum": "Applies the substantive law of {law} to the parties' rights and obligations, subject to mandatory local law."},
            {"s": ["{A_cap} and {B} expressly select the law of {law} as the proper law of this contract, so that no question about which legal system applies can arise between them, and the Vienna Sales Convention is excluded."],
             "f": {"cisg": "no"},
             "sum": "Expressly selects {law} as the proper law of the contract and excludes the Vienna Sales Convention."},
        ],
        "qa": [
            {"q": ["Which law governs this agreement?", "What is the governing law?",
                   "Under which jurisdiction's law is this contract interpreted?"],
             "a": "The law of {law}."},
            {"q": ["Which courts have jurisdiction over disputes?", "Where must disputes be heard?",
                   "Is the courts' jurisdiction exclusive?"],
             "a": "{courts_cap}, with {jx} jurisdiction."},
            {"q": ["Does the CISG apply?", "Does the UN sales convention apply to this contract?"],
             "a": "No. The clause expressly excludes it.", "need": ["cisg"]},
        ],
    },
    "termination_for_convenience": {
        "heads": ["Termination for Convenience", "Termination without Cause", "Early Termination"],
        "forms": [
            {"s": ["{who_cap} may terminate this Agreement for convenience at any time upon {notice_p} prior written notice to the other party."],
             "sum": "Lets {who} end the agreement for convenience on {notice_p} prior written notice."},
            {"s": ["{who_cap} may terminate this Agreement, in whole or in part, without cause by giving not less than {notice_p} written notice to the other party.",
                   "Termination under this clause shall not give rise to any liability for damages, but {B} shall pay for all Services performed up to the effective date of termination."],
             "f": {"pay": "{B} must pay for all Services performed up to the effective date of termination"},
             "sum": "Allows {who} to terminate without cause on at least {notice_p} written notice, with payment due for services performed to the termination date."},
            {"s": ["Notwithstanding anything to the contrary in this {agreement}, {who} shall be entitled to terminate this {agreement} without cause on giving {notice_p} notice in writing."],
             "sum": "Gives {who} a right to terminate without cause on {notice_p} written notice."},
            {"s": ["{who_cap} may end this agreement at any time, for any reason or no reason, by giving {notice_p} written notice.",
                   "A party ending the agreement under this clause before the end of the Initial Term will pay an early termination fee of {fee}."],
             "f": {"feex": "{fee}"},
             "sum": "Permits {who} to end the agreement for any reason on {notice_p} written notice, subject to an early termination fee of {fee}."},
            {"s": ["After the first {min_term} of the Term, {who} may terminate this Agreement for convenience by providing at least {notice_p} advance written notice."],
             "f": {"first": "after the first {min_term} of the Term"},
             "sum": "Allows {who} to terminate for convenience after the first {min_term}, on at least {notice_p} written notice."},
            {"s": ["This Agreement may be terminated by {who} without cause upon {notice_p} written notice, provided that any prepaid Fees relating to the period after the effective date of termination shall be refunded pro rata."],
             "f": {"pay": "prepaid Fees for the period after termination are refunded pro rata"},
             "sum": "Lets {who} terminate without cause on {notice_p} written notice, with a pro rata refund of prepaid fees."},
            # eval
            {"s": ["{who_cap} is free to bring this Agreement to an end without having to show cause, provided it serves written notice on the other party no later than {notice} before the intended termination date."],
             "sum": "Allows {who} to bring the agreement to an end without showing cause by serving written notice at least {notice} in advance."},
            {"s": ["(a) {who_cap} may, in its sole discretion and for its convenience, terminate this Agreement on {notice_p} prior written notice.",
                   "(b) Upon such termination, {B} shall pay {A} for conforming work completed prior to the termination date, and neither party shall have any further liability except for accrued rights."],
             "f": {"pay": "{B} must pay {A} for conforming work completed before the termination date"},
             "sum": "Gives {who} a discretionary right to terminate on {notice_p} prior written notice, with payment for conforming work completed."},
            {"s": ["Where {who} no longer requires the Services, it may withdraw from this contract by notice in writing taking effect {notice} after the notice is received; a cancellation charge of {fee} then becomes payable."],
             "f": {"feex": "{fee}"},
             "sum": "Lets {who} withdraw from the contract on {notice} written notice if it no longer needs the services, subject to a cancellation charge of {fee}."},
        ],
        "qa": [
            {"q": ["Who may terminate for convenience?", "Which party has the right to terminate without cause?"],
             "a": "{who_cap}."},
            {"q": ["How much notice is required to terminate?", "What is the notice period for termination without cause?"],
             "a": "{notice}, given in writing."},
            {"q": ["Is there a fee for terminating early?", "What does the terminating party have to pay?"],
             "a": "Yes: {feex}."},
            {"q": ["What payment obligation applies on termination?", "What happens to fees when the agreement is terminated?"],
             "a": "{pay_cap}."},
            {"q": ["When can the convenience right first be used?"],
             "a": "Only {first}."},
        ],
    },
    "termination_for_cause": {
        "heads": ["Termination for Cause", "Termination for Breach", "Termination"],
        "forms": [
            {"s": ["Either party may terminate this Agreement [immediately|with immediate effect|forthwith] by written notice if the other party commits a material breach of [this Agreement|any of its obligations under this Agreement|its obligations hereunder] and, where the breach is capable of remedy, fails to remedy it within {cure} of being [notified in writing to do so|given written notice requiring it to do so|notified of the breach in writing]."],
             "f": {"who": "either party"},
             "sum": "Lets either party terminate for a material breach that is not remedied within {cure} of written notice."},
            {"s": ["Either party may terminate this Agreement with immediate effect by giving written notice to the other party if the other party (a) commits a material breach which is irremediable or which is not remedied within {cure} after receipt of notice of the breach; or (b) becomes insolvent[, is unable to pay its debts as they fall due|], makes an assignment for the benefit of creditors, or has a receiver, administrator or liquidator appointed."],
             "f": {"who": "either party", "insolv": "yes"},
             "sum": "Allows immediate termination for an unremedied material breach (cure period {cure}) or the other party's insolvency."},
            {"s": ["{A_cap} may terminate this Agreement upon written notice if {B} fails to pay any undisputed amount within {cure} after written notice of non-payment."],
             "f": {"who": "{A}", "trigger": "{B} failing to pay an undisputed amount within {cure} after written notice of non-payment"},
             "sum": "Lets {A} terminate if {B} leaves an undisputed amount unpaid for {cure} after a non-payment notice."},
            {"s": ["If a party materially breaches this Agreement and does not [cure|remedy] that breach within {cure} after receiving written notice [describing it|specifying the breach in reasonable detail], the non-breaching party may terminate this Agreement by written notice [effective immediately|with immediate effect|effective on the date stated in the notice]."],
             "f": {"who": "the non-breaching party"},
             "sum": "Permits the non-breaching party to terminate immediately if a material breach is not cured within {cure} of written notice."},
            {"s": ["{B_cap} may terminate this Agreement for cause if {A} misses the Availability target in any {n} months within a rolling twelve-month period.",
                   "Such termination shall be without penalty to {B}."],
             "f": {"who": "{B}", "trigger": "{A} missing the Availability target in any {n} months within a rolling twelve-month period"},
             "sum": "Gives {B} a penalty-free right to terminate if {A} misses the availability target in {n} months of any rolling year."},
            {"s": ["This Agreement may be terminated by the non-defaulting party on {cure} written notice if the other party is in material default [and such default continues unremedied at the end of that notice period|which remains unremedied when that notice period expires|that it has failed to remedy by the end of that period]."],
             "f": {"who": "the non-defaulting party"},
             "sum": "Allows the non-defaulting party to terminate on {cure} notice if a material default remains unremedied."},
            # eval
            {"s": ["Should either party breach any material term of this Agreement, the other party may serve a notice requiring the breach to be put right; if it has not been put right within {cure} of that notice, the other party may bring this Agreement to an end at once."],
             "f": {"who": "the other (innocent) party"},
             "sum": "Lets the innocent party end the agreement at once if a material breach is not put right within {cure} of a notice."},
            {"s": ["{A_cap} shall be entitled to terminate forthwith if {B} (i) ceases or threatens to cease to carry on business, (ii) enters into any composition with its creditors, or (iii) commits a material breach of clause {ref} which, if remediable, is not remedied within {cure}."],
             "f": {"who": "{A}", "insolv": "yes"},
             "sum": "Allows {A} to terminate forthwith on {B}'s cessation of business, creditor arrangements, or an unremedied breach of clause {ref} (cure period {cure})."},
            {"s": ["We may end this contract straight away by telling you in writing if you seriously break it and don't fix the problem within {cure} of us asking you to."],
             "f": {"who": "the provider (\"we\")"},
             "sum": "Lets the provider end the contract immediately if the customer seriously breaches it and fails to fix it within {cure} of being asked."},
        ],
        "qa": [
            {"q": ["How long is the cure period?", "How long does the breaching party have to fix the breach?"],
             "a": "{cure} after written notice of the breach."},
            {"q": ["Who may terminate under this clause?", "Which party holds the termination right?"],
             "a": "{who_cap}."},
            {"q": ["Can insolvency trigger termination?", "Is insolvency a ground for termination here?"],
             "a": "Yes, insolvency-type events allow termination.", "need": ["insolv"]},
            {"q": ["What triggers the right to terminate?", "What event allows termination?"],
             "a": "{trigger_cap}."},
        ],
    },
    "limitation_of_liability": {
        "heads": ["Limitation of Liability", "Liability", "Limitations"],
        "forms": [
            {"s": ["Except for liability arising from a party's gross negligence, willful misconduct or indemnification obligations, each party's total aggregate liability arising out of or relating to this Agreement shall not exceed the total fees paid or payable by {B} under this Agreement in the {months} immediately preceding the event giving rise to the claim."],
             "f": {"capx": "the total fees paid or payable by {B} in the {months} before the event giving rise to the claim",
                   "carve": "gross negligence, willful misconduct and indemnification obligations"},
             "sum": "Caps each party's liability at the fees paid or payable in the {months} before the claim, except for gross negligence, willful misconduct and indemnities."},
            {"s": ["Subject to clause {ref}, {A}'s total liability to {B}, whether in contract, tort (including negligence), breach of statutory duty or otherwise, shall be limited to {cap}.",
                   "{A_cap} shall not be liable for any loss of profits, loss of business, depletion of goodwill or any indirect or consequential loss."],
             "f": {"capx": "{cap}", "profits": "no"},
             "sum": "Limits {A}'s total liability to {cap} and excludes lost profits, goodwill and indirect or consequential loss."},
            {"s": ["IN NO EVENT SHALL EITHER PARTY BE LIABLE FOR ANY INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY OR CONSEQUENTIAL DAMAGES, INCLUDING LOST PROFITS, ARISING OUT OF THIS AGREEMENT, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGES.",
                   "EACH PARTY'S MAXIMUM AGGREGATE LIABILITY UNDER THIS AGREEMENT SHALL NOT EXCEED {CAP}."],
             "upper": True, "f": {"capx": "{cap}", "profits": "no"},
             "sum": "Excludes indirect and consequential damages, including lost profits, and caps each party's aggregate liability at {cap}."},
            {"s": ["Nothing in this Agreement limits either party's liability for death or personal injury caused by its negligence, or for fraud or fraudulent misrepresentation.",
                   "Subject to that, each party's aggregate liability in each Contract Year shall not exceed {mult} the Charges paid in that Contract Year."],
             "f": {"capx": "{mult} the Charges paid in that Contract Year",
                   "carve": "death or personal injury caused by negligence, and fraud or fraudulent misrepresentation"},
             "sum": "Caps annual liability at {mult} the charges paid that year, leaving death, personal injury and fraud unlimited."},
            {"s": ["Our liability to you for all claims under this agreement is capped at {cap}, and we are not responsible for losses that were not reasonably foreseeable when the agreement was made."],
             "f": {"capx": "{cap}"},
             "sum": "Caps the provider's liability for all claims at {cap} and excludes unforeseeable losses."},
            {"s": ["The aggregate liability of {A} for all claims under or in connection with this Agreement shall in no event exceed the lesser of (i) {cap} and (ii) the amounts paid by {B} in the {months} preceding the claim."],
             "f": {"capx": "the lesser of {cap} and the amounts paid by {B} in the {months} preceding the claim"},
             "sum": "Limits {A}'s aggregate liability to the lesser of {cap} and the amounts {B} paid in the preceding {months}."},
            # eval
            {"s": ["Neither party will be responsible to the other for lost revenue, lost profits, lost data or any special or punitive damages.",
                   "Apart from that, the most either party can recover from the other under this agreement, in total, is {cap}."],
             "f": {"capx": "{cap} in total", "profits": "no"},
             "sum": "Rules out lost revenue, profits, data and punitive damages and limits total recovery by either party to {cap}."},
            {"s": ["Save in respect of the Excluded Liabilities, the maximum amount recoverable from {A} in respect of all Claims shall be capped at an amount equal to {mult} the annual Subscription Fees payable in the year in which the first such Claim arose."],
             "f": {"capx": "{mult} the annual Subscription Fees payable in the year the first Claim arose"},
             "sum": "Caps the amount recoverable from {A} at {mult} the annual subscription fees, except for the Excluded Liabilities."},
            {"s": ["{A_cap}'s entire liability for any and all claims relating to the {deliv}, howsoever arising, is limited to direct damages not exceeding {cap}; liability for fraud, and for death or personal injury resulting from negligence, is unlimited."],
             "f": {"capx": "direct damages not exceeding {cap}",
                   "carve": "fraud, and death or personal injury resulting from negligence"},
             "sum": "Limits {A}'s liability relating to the {deliv} to direct damages of up to {cap}, with fraud and negligent death or injury unlimited."},
        ],
        "qa": [
            {"q": ["What is the liability cap?", "How much can be recovered at most?", "What is the maximum liability?"],
             "a": "{capx_cap}."},
            {"q": ["Are lost profits recoverable?", "Can a party claim lost profits?"],
             "a": "No. Lost profits are excluded.", "need": ["profits"]},
            {"q": ["Which liabilities are not limited?", "What is carved out of the cap?"],
             "a": "Liability for {carve}."},
        ],
    },
    "indemnification": {
        "heads": ["Indemnification", "Indemnity", "Indemnities"],
        "forms": [
            {"s": ["{A_cap} shall defend, indemnify and hold harmless {B} and its officers, directors and employees from and against any and all losses, damages, liabilities, costs and expenses (including reasonable attorneys' fees) arising out of any third-party claim alleging that the {deliv} infringes any patent, copyright or trade secret."],
             "f": {"ind": "{A}", "scope": "third-party claims alleging that the {deliv} infringes a patent, copyright or trade secret"},
             "sum": "Requires {A} to defend and indemnify {B} against third-party claims that the {deliv} infringes intellectual property."},
            {"s": ["{B_cap} will indemnify {A} against all claims, losses and expenses arising from {B}'s use of the Services in breach of the Acceptable Use Policy or applicable law."],
             "f": {"ind": "{B}", "scope": "claims arising from {B}'s use of the Services in breach of the Acceptable Use Policy or applicable law"},
             "sum": "Makes {B} indemnify {A} for claims caused by {B}'s use of the services in breach of the Acceptable Use Policy or the law."},
            {"s": ["Each party (the \"Indemnifying Party\") shall indemnify [the other party|the other party and its Affiliates] against any [loss or damage|losses, damages, costs or expenses] arising from death, personal injury or damage to tangible property caused by the negligence of the Indemnifying Party or its personnel."],
             "f": {"ind": "each party (mutual)", "scope": "losses arising from death, personal injury or damage to tangible property caused by the negligence of the Indemnifying Party or its personnel"},
             "sum": "Creates a mutual indemnity for death, personal injury and property damage caused by a party's negligence."},
            {"s": ["{A_cap} shall indemnify {B} in respect of any claim brought by a third party that the use of the {deliv} infringes that third party's intellectual property rights, provided that {B} (a) notifies {A} of the claim in writing within {notify}; (b) allows {A} sole control of the defense and settlement; and (c) gives {A} reasonable assistance at {A}'s expense."],
             "f": {"ind": "{A}", "scope": "third-party claims that use of the {deliv} infringes intellectual property rights"},
             "sum": "Gives {B} an IP infringement indemnity from {A}, conditional on notice within {notify}, {A}'s control of the defence and reasonable assistance."},
            {"s": ["{A_cap} agrees to indemnify, defend and hold {B} harmless from any fines, penalties or third-party claims resulting from {A}'s breach of its data protection obligations, up to a maximum of {cap}."],
             "f": {"ind": "{A}", "scope": "fines, penalties and third-party claims resulting from {A}'s breach of its data protection obligations", "icap": "{cap}"},
             "sum": "Requires {A} to indemnify {B} for fines and claims caused by {A}'s data protection breaches, up to {cap}."},
            {"s": ["To the fullest extent permitted by law, {B} shall indemnify {A} from and against all Losses incurred as a result of any claim that the Customer Data, or {A}'s use of it in accordance with this Agreement, infringes the rights of a third party."],
             "f": {"ind": "{B}", "scope": "claims that the Customer Data, or {A}'s permitted use of it, infringes a third party's rights"},
             "sum": "Makes {B} indemnify {A} against third-party claims that the customer data or its permitted use infringes their rights."},
            # eval
            {"s": ["If anyone sues {B} claiming that the {deliv} breaches their intellectual property, {A} will take over the defense at its own cost and pay any damages awarded or any settlement it agrees to, as long as {B} tells {A} promptly and cooperates."],
             "f": {"ind": "{A}", "scope": "claims that the {deliv} breaches someone's intellectual property"},
             "sum": "Obliges {A} to defend {B} at its own cost against IP claims over the {deliv} and pay resulting damages or settlements."},
            {"s": ["{A_cap} hereby undertakes to keep {B} fully indemnified from and against all actions, proceedings, claims, demands and costs arising in respect of any injury to persons or damage to property caused by the execution of the Works, up to {cap} per occurrence."],
             "f": {"ind": "{A}", "scope": "injury to persons or damage to property caused by the execution of the Works", "icap": "{cap} per occurrence"},
             "sum": "Requires {A} to keep {B} indemnified for personal injury and property damage caused by the works, up to {cap} per occurrence."},
            {"s": ["The Distributor shall make good to {A} any loss, liability or expense suffered as a result of product-liability claims caused by the Distributor's unauthorized modification, relabeling or improper storage of the Products, provided {A} gives notice of the claim within {notify}."],
             "roles": [("Manufacturer", "Distributor"), ("Supplier", "Distributor")],
             "f": {"ind": "the Distributor", "scope": "product-liability claims caused by the Distributor's unauthorized modification, relabeling or improper storage of the Products"},
             "sum": "Makes the Distributor compensate {A} for product-liability losses caused by its unauthorized modification, relabeling or storage of the products."},
        ],
        "qa": [
            {"q": ["Who gives the indemnity?", "Which party is the indemnifying party?"],
             "a": "{ind_cap}."},
            {"q": ["What claims does the indemnity cover?", "What is the scope of the indemnity?"],
             "a": "{scope_cap}."},
            {"q": ["Is the indemnity capped?", "Is there a limit on the indemnity?"],
             "a": "Yes, up to {icap}."},
            {"q": ["How quickly must a claim be notified?", "What is the deadline for notifying a claim?"],
             "a": "Within {notify}."},
        ],
    },
    "confidentiality": {
        "heads": ["Confidentiality", "Confidential Information", "Non-Disclosure"],
        "forms": [
            {"s": ["Each party shall keep [confidential|secret|in confidence] all Confidential Information of the other party and shall not use [such information|it] [except for|other than for] the purpose of [performing its obligations under this Agreement|exercising its rights and performing its obligations under this Agreement].",
                   "The obligations in this clause shall survive [termination|termination or expiry] of this Agreement for a period of {years}."],
             "sum": "Requires each party to keep the other's confidential information secret and use it only to perform the agreement, for {years} after termination."},
            {"s": ["The Receiving Party shall not [disclose|divulge or make available] the Disclosing Party's Confidential Information to any person other than its employees, officers and professional advisers who need to know it for the Purpose and who are bound by obligations of confidentiality no less [protective|stringent|onerous] than those set out in this Agreement[.|, and it shall be responsible for any breach by them.]"],
             "f": {"who_may": "its employees, officers and professional advisers who need to know it for the Purpose and are bound by equivalent confidentiality obligations"},
             "sum": "Restricts disclosure of confidential information to need-to-know employees, officers and advisers bound by equivalent duties."},
            {"s": ["Confidential Information does not include information that (a) is or becomes [publicly available|generally available to the public|part of the public domain] through no [fault|breach] of the Receiving Party; (b) was [lawfully in the Receiving Party's possession|already lawfully known to the Receiving Party] before disclosure; (c) is independently developed without use of the Confidential Information; or (d) is [received|lawfully obtained] from a third party [without a duty of confidentiality|who is not under any obligation of confidence]."],
             "f": {"indep": "no"},
             "sum": "Excludes public, previously held, independently developed and third-party information from the definition of confidential information."},
            {"s": ["Within {ret} of termination or upon written request, {B} shall return or destroy all documents and materials containing {A}'s Confidential Information and certify in writing that it has done so."],
             "sum": "Requires {B} to return or destroy {A}'s confidential materials within {ret} of termination or request and certify that it has done so."},
            {"s": ["{B_cap} may disclose Confidential Information to the extent required by law, court order or the rules of a recognized stock exchange, provided that, where lawful, it gives {A} prompt written notice so that {A} may seek a protective order."],
             "f": {"compelled": "prompt written notice to {A}, where lawful, so it can seek a protective order"},
             "sum": "Permits {B} to make legally compelled disclosures if it gives {A} prompt notice to seek a protective order."},
            {"s": ["Each party will treat the other's confidential information with at least the same care it uses for its own[, and never less than reasonable care|, which must be at least reasonable care].",
                   "These duties last for {years} after this agreement [ends|comes to an end], except for trade secrets, which must be protected for as long as they [remain|stay] trade secrets."],
             "sum": "Sets a reasonable-care standard for confidential information lasting {years} after the agreement ends, and indefinitely for trade secrets."},
            # eval
            {"s": ["Neither party will, without the other's prior written consent, reveal to any third party the terms of this Agreement or any non-public business, technical or financial information received from the other, and each will use such information solely to evaluate and carry out the Project; this restriction continues for {years} following expiry or termination."],
             "sum": "Bars each party from revealing the agreement's terms or the other's non-public information without consent, for {years} after it ends."},
            {"s": ["{B_cap} undertakes to hold all Proprietary Information [of|received from] {A} in strict confidence, to restrict access to it to those of its staff who require it, and, upon {A}'s request, to deliver up or securely erase it within {ret}."],
             "f": {"who_may": "those of its staff who require it"},
             "sum": "Obliges {B} to keep {A}'s proprietary information secret, limit access to staff who need it and return or erase it within {ret} on request."},
            {"s": ["You must keep [our|{A}'s] pricing, [roadmap|product plans] and customer lists private and only share them with people in your team who need them to do the work; if someone outside asks you for them, say no and tell [us|{A}] straight away, and when the project [finishes|ends] hand everything back within {ret}."],
             "f": {"who_may": "people in the team who need it to do the work"},
             "sum": "Requires the other side to keep pricing, roadmap and customer lists private, share them only internally on a need-to-know basis and hand them back within {ret}."},
        ],
        "qa": [
            {"q": ["How long do the confidentiality obligations last?", "For how long must information be kept confidential?"],
             "a": "{years_cap} after termination or expiry."},
            {"q": ["Within what time must confidential materials be returned or destroyed?", "How quickly must the information be handed back?"],
             "a": "Within {ret}."},
            {"q": ["Who may the information be disclosed to?", "Who is allowed to see the confidential information?"],
             "a": "Only {who_may}."},
            {"q": ["Is independently developed information protected?"],
             "a": "No. Information developed independently without use of the Confidential Information is excluded.", "need": ["indep"]},
            {"q": ["What must happen before a legally required disclosure?"],
             "a": "{compelled_cap}."},
        ],
    },
    "non_compete": {
        "heads": ["Non-Competition", "Restrictive Covenants", "Non-Compete"],
        "roles": [("Company", "Employee"), ("Company", "Executive"), ("Company", "Consultant"),
                  ("Employer", "Employee"), ("Company", "Contractor")],
        "forms": [
            {"s": ["During the term of employment and for a period of {dur} thereafter, {B} shall not, directly or indirectly, engage in or be employed by any business that competes with the business of {A} within {territory}."],
             "f": {"rest": "{B}"},
             "sum": "Stops {B} from working for or engaging in a competing business within {territory} during employment and for {dur} afterwards."},
            {"s": ["For {dur} after the Completion Date, the Seller shall not carry on or be engaged, concerned or interested in any business which competes with the Business in {territory}.",
                   "Holding up to {pct} of the listed shares of any company shall not breach this clause."],
             "roles": [("Buyer", "Seller"), ("Purchaser", "Seller")],
             "f": {"rest": "the Seller"},
             "sum": "Prevents the Seller from competing with the sold business in {territory} for {dur} after completion, allowing listed shareholdings up to {pct}."},
            {"s": ["{B_cap} agrees that, for {dur} following the termination of this Agreement for any reason, {B} will not provide services similar to the Services to any competitor of {A} operating in {territory}."],
             "f": {"rest": "{B}"},
             "sum": "Bars {B} from providing similar services to {A}'s competitors in {territory} for {dur} after termination."},
            {"s": ["The Executive covenants that for the Restricted Period ({dur} from the Termination Date, less any period spent on garden leave) the Executive will not be employed or engaged in any Competing Business within {territory}."],
             "roles": [("Company", "Executive")],
             "f": {"garden": "yes", "rest": "the Executive"},
             "sum": "Restricts the Executive from joining a competing business in {territory} for {dur} after termination, reduced by any garden leave."},
            {"s": ["While this agreement is in force and for {dur} afterwards, {B} must not start, join or help any business that sells {line} in competition with {A} in {territory}."],
             "f": {"rest": "{B}"},
             "sum": "Prohibits {B} from starting, joining or helping a competing {line} business in {territory} during the agreement and for {dur} after."},
            {"s": ["{B_cap} shall not, for a period of {dur} after the end of the engagement, within {territory}, perform services for any entity engaged in the business of {line}, provided that {A} pays {B} compensation equal to {comp} of {B}'s last average monthly remuneration for the duration of the restriction."],
             "f": {"compx": "{comp} of {B}'s last average monthly remuneration for the duration of the restriction", "rest": "{B}"},
             "sum": "Restricts {B} from working in {line} in {territory} for {dur} after the engagement, in return for compensation of {comp} of monthly pay."},
            # eval
            {"s": ["As a condition of the payment described in Schedule 2, {B} undertakes that for {dur} it will not compete, directly or through any affiliate, with {A}'s {line} business anywhere in {territory}."],
             "f": {"rest": "{B}"},
             "sum": "In return for the Schedule 2 payment, binds {B} not to compete with {A}'s {line} business in {territory} for {dur}."},
            {"s": ["{B_cap} may not, in the {dur} after leaving, work for or own any company in {territory} whose main business is {line}, but this does not stop {B} from holding shares of up to {pct} in a publicly listed company."],
             "f": {"rest": "{B}"},
             "sum": "Keeps {B} from working for or owning a {line} company in {territory} for {dur} after leaving, except listed holdings up to {pct}."},
            {"s": ["In consideration of the grant of options under the Plan, {B} shall refrain, throughout the Restricted Term of {dur} commencing on the date of separation, from rendering any advisory, managerial or technical services to an enterprise active in {line} in {territory}."],
             "f": {"rest": "{B}"},
             "sum": "In exchange for option grants, bars {B} from advising or working for a {line} enterprise in {territory} for {dur} after separation."},
        ],
        "qa": [
            {"q": ["How long does the non-compete last?", "What is the duration of the restriction?",
                   "For how long is competition restricted?"],
             "a": "{dur_cap}."},
            {"q": ["What territory does the restriction cover?", "Where does the non-compete apply?"],
             "a": "{territory_cap}."},
            {"q": ["Who is restricted by this clause?", "Which party may not compete?"],
             "a": "{rest_cap}."},
            {"q": ["Is the restricted party compensated?", "What compensation is paid for the restriction?"],
             "a": "Yes: {compx}."},
            {"q": ["Is any shareholding allowed?", "Can the restricted party hold shares in a competitor?"],
             "a": "Yes, holdings of up to {pct} (of listed shares) are permitted."},
            {"q": ["Does garden leave affect the restricted period?"],
             "a": "Yes. Any period spent on garden leave is deducted from the restricted period of {dur}.", "need": ["garden"]},
        ],
    },
    "non_solicitation": {
        "heads": ["Non-Solicitation", "Non-Solicitation of Employees", "No Poaching"],
        "forms": [
            {"s": ["During the term of this Agreement and for {dur} thereafter, neither party shall [solicit or entice away, or attempt to solicit or entice away,|directly or indirectly solicit or entice away] any employee of the other party who has been [involved in the provision of|engaged in providing] the Services."],
             "f": {"prot": "employees of the other party involved in providing the Services", "rest": "both parties"},
             "sum": "Prevents both parties from poaching each other's employees involved in the services during the term and for {dur} after."},
            {"s": ["For {dur} after termination, {B} shall not, directly or indirectly, solicit any customer of {A} with whom {B} had material dealings during the last {lookback} of the engagement."],
             "f": {"prot": "customers of {A} with whom {B} had material dealings in the last {lookback} of the engagement", "rest": "{B}"},
             "sum": "Stops {B} from soliciting {A}'s customers it dealt with in the last {lookback} of the engagement, for {dur} after termination."},
            {"s": ["Neither party will [hire or solicit|solicit or employ] the other's staff during the term and for {dur} after it ends.",
                   "General recruitment advertising not targeted at the other party's staff, and hiring anyone who responds to it, is not a breach[.| of this clause.]"],
             "f": {"prot": "the other party's staff", "rest": "both parties", "ads": "yes"},
             "sum": "Bars both parties from hiring or soliciting each other's staff during the term and for {dur} after, except through general advertising."},
            {"s": ["If {B} employs or engages any of {A}'s personnel in breach of this clause within {dur} of the end of this Agreement, {B} shall pay {A} a placement fee equal to {fee_pct} of that person's annual gross salary."],
             "f": {"prot": "{A}'s personnel", "rest": "{B}"},
             "sum": "Requires {B} to pay a placement fee of {fee_pct} of annual salary if it hires {A}'s personnel within {dur} after the agreement ends."},
            {"s": ["{B_cap} covenants that it shall not, for {dur} following the Termination Date, canvass, solicit or approach any Restricted Customer for the purpose of supplying goods or services competitive with those of {A}."],
             "f": {"prot": "Restricted Customers", "rest": "{B}"},
             "sum": "Prohibits {B} from approaching restricted customers with competing goods or services for {dur} after termination."},
            {"s": ["Each party agrees not to induce, or attempt to induce, any of the other party's [employees or contractors|employees, contractors or consultants] to [leave their employment or engagement|terminate their employment or engagement] during the term of this Agreement and for a period of {dur} after its [termination|termination or expiry]."],
             "f": {"prot": "the other party's employees and contractors", "rest": "both parties"},
             "sum": "Stops each party inducing the other's employees or contractors to leave, during the term and for {dur} after."},
            # eval
            {"s": ["Until {dur} have passed after this agreement ends, {B} won't try to win away any of {A}'s clients or tempt any of its team members to quit."],
             "f": {"prot": "{A}'s clients and team members", "rest": "{B}"},
             "sum": "Stops {B} from luring away {A}'s clients or staff until {dur} after the agreement ends."},
            {"s": ["The Consultant shall not, during the Engagement or the {dur} immediately after it, seek to procure orders from or do business with any person who was a client of the Company in the {lookback} preceding termination."],
             "roles": [("Company", "Consultant")],
             "f": {"prot": "clients of the Company in the {lookback} preceding termination", "rest": "the Consultant"},
             "sum": "Prevents the Consultant from seeking business from the Company's recent clients during the engagement and for {dur} after."},
            {"s": ["{A_cap} and {B} each undertake that, for so long as the Services are provided and for {dur} afterwards, they will not knowingly make an offer of employment to a Key Person of the other, save with that party's written approval; a breach entitles the affected party to liquidated damages of {fee_pct} of the Key Person's first-year remuneration."],
             "f": {"prot": "Key Persons of the other party", "rest": "both parties"},
             "sum": "Bars both parties from offering jobs to each other's key people during the services and for {dur} after, with liquidated damages of {fee_pct} of first-year pay."},
        ],
        "qa": [
            {"q": ["How long does the non-solicitation restriction last?", "For how long may they not solicit?"],
             "a": "{dur_cap}."},
            {"q": ["Who is protected from solicitation?", "Whom may the restricted party not approach?"],
             "a": "{prot_cap}."},
            {"q": ["Who is bound by the restriction?", "Which party may not solicit?"],
             "a": "{rest_cap}."},
            {"q": ["What fee is payable for hiring in breach?", "What are the consequences of hiring staff in breach?"],
             "a": "A fee of {fee_pct} of the person's annual (or first-year) pay."},
            {"q": ["Is general job advertising a breach?"],
             "a": "No. General recruitment advertising not targeted at the other party's staff is not a breach.", "need": ["ads"]},
        ],
    },
    "assignment": {
        "heads": ["Assignment", "Assignment and Subcontracting", "Transfer"],
        "forms": [
            {"s": ["Neither party may assign, transfer[, charge|] or subcontract any of its rights or obligations under this Agreement without the prior written consent of the other party, such consent not to be unreasonably withheld[| or delayed]."],
             "f": {"consent": "the prior written consent of the other party, not to be unreasonably withheld"},
             "sum": "Prohibits assignment, transfer or subcontracting without the other party's prior written consent, which may not be unreasonably withheld."},
            {"s": ["{B_cap} may not assign this Agreement without {A}'s prior written consent.",
                   "{A_cap} may assign this Agreement, without consent, to any Affiliate or to a successor in connection with a merger, acquisition or sale of all or substantially all of its assets."],
             "f": {"consent": "{A}'s prior written consent for any assignment by {B}", "free": "{A}"},
             "sum": "Requires {A}'s consent for assignment by {B}, while {A} may assign freely to affiliates or successors."},
            {"s": ["This Agreement shall be binding upon and inure to the benefit of the parties and their respective [successors and permitted assigns|heirs, successors and permitted assigns].",
                   "Any purported assignment[ or delegation|] in violation of this [Section|clause] shall be [null and void|void and of no effect]."],
             "f": {"void": "yes"},
             "sum": "Binds successors and permitted assigns and makes any assignment in breach of the clause void."},
            {"s": ["Either party may assign this Agreement in its entirety, without the other party's consent, to an entity that acquires all or substantially all of the business or assets to which this Agreement relates, provided that the assignee agrees in writing to be bound by its terms and notice is given within {notice}."],
             "f": {"free": "either party, to an acquirer of substantially all of the relevant business or assets"},
             "sum": "Allows either party to assign without consent to an acquirer of the relevant business, if the assignee agrees to be bound and notice is given within {notice}."},
            {"s": ["{A_cap} may subcontract [the performance of any of its obligations|any of its obligations|all or part of the Services] under this Agreement [but|provided that it] shall remain responsible for the acts and omissions of its subcontractors as if they were its own."],
             "f": {"sub": "yes, but {A} remains responsible for its subcontractors' acts and omissions"},
             "sum": "Lets {A} subcontract its obligations while remaining responsible for its subcontractors."},
            {"s": ["{B_cap} shall not, without the prior written consent of {A}, assign, novate, charge or otherwise deal with all or any of its rights under this Agreement, and any change of control of {B} shall be deemed an assignment for this purpose."],
             "f": {"consent": "{A}'s prior written consent", "coc": "yes"},
             "sum": "Bars {B} from assigning or dealing with its rights without {A}'s consent and treats a change of control of {B} as an assignment."},
            # eval
            {"s": ["You can't pass this agreement, or any of your rights under it, to someone else unless {A} agrees in writing first; {A} may transfer its rights to another company in its group at any time by telling you."],
             "f": {"consent": "{A}'s prior written agreement", "free": "{A}, within its group"},
             "sum": "Stops the customer transferring the agreement without {A}'s written agreement, while {A} may transfer within its group on notice."},
            {"s": ["No party shall be entitled to [cede, delegate or transfer|cede, assign, delegate or otherwise transfer] any right or obligation hereunder to a third party save with the prior written approval of the other party, which approval may be given or withheld in that party's sole discretion."],
             "f": {"consent": "the other party's prior written approval, at its sole discretion"},
             "sum": "Forbids ceding, delegating or transferring rights or obligations without the other party's approval, which is in its sole discretion."},
            {"s": ["A transfer of more than 50% of the voting shares in {B} shall be treated as an assignment requiring {A}'s written consent, and {B} shall notify {A} of any such proposed transfer at least {notice} in advance."],
             "f": {"consent": "{A}'s written consent", "coc": "yes"},
             "sum": "Treats a transfer of over half of {B}'s voting shares as an assignment needing {A}'s consent, with {notice_p} advance notice."},
        ],
        "qa": [
            {"q": ["Is consent needed to assign?", "Can a party assign without consent?", "What consent is needed for an assignment?"],
             "a": "Yes: {consent}."},
            {"q": ["Who may assign without consent?", "Can any party transfer the agreement freely?"],
             "a": "{free_cap}."},
            {"q": ["Does a change of control count as an assignment?"],
             "a": "Yes, it is treated as an assignment.", "need": ["coc"]},
            {"q": ["What happens to an assignment made in breach?", "Is an unauthorized assignment valid?"],
             "a": "It is void.", "need": ["void"]},
            {"q": ["May work be subcontracted?", "Can the supplier use subcontractors?"],
             "a": "{sub_cap}."},
        ],
    },
    "force_majeure": {
        "heads": ["Force Majeure", "Events Beyond Control", "Force Majeure Events"],
        "forms": [
            {"s": ["Neither party shall be liable for any failure or delay in performing its obligations where such failure or delay results from events beyond its reasonable control, including acts of God, flood, fire, earthquake, war, terrorism, epidemic, governmental action or labor disputes (other than those involving its own workforce).",
                   "If such an event continues for more than {fm_days}, either party may terminate this Agreement by written notice."],
             "sum": "Excuses delays caused by events beyond a party's control and allows termination if the event lasts more than {fm_days}."},
            {"s": ["A party affected by a Force Majeure Event shall notify the other party in writing within {fm_notice} of becoming aware of it, stating its likely duration, and shall use [reasonable endeavors|all reasonable efforts] to mitigate its effects[.| and resume performance as soon as practicable.]"],
             "sum": "Requires the affected party to give written notice of a force majeure event within {fm_notice} and to mitigate its effects."},
            {"s": ["Neither party is responsible for [delays|delays or failures] caused by circumstances it could not reasonably control, such as [natural disasters, pandemics, widespread power or internet outages, or strikes|floods, fires, pandemics, regional power cuts or industrial action|storms, epidemics, large-scale internet outages or strikes].",
                   "This does not excuse late payment of any amount [owed|due]."],
             "f": {"pay": "no"},
             "sum": "Excuses delays caused by uncontrollable events such as disasters, pandemics and outages, but not late payment."},
            {"s": ["If a Force Majeure Event prevents {A} from providing the Services for more than {fm_days} in aggregate in {period}, {B} may terminate the affected Services immediately on written notice and receive a refund of any prepaid fees for them."],
             "f": {"who": "{B}"},
             "sum": "Lets {B} terminate affected services with a refund of prepaid fees if force majeure stops {A} performing for over {fm_days} in {period}."},
            {"s": ["The time for performance of any obligation affected by a Force Majeure Event shall be extended by a period equal to the duration of that event, provided the affected party has served notice within {fm_notice}."],
             "sum": "Extends time for performance by the length of a force majeure event, if notice is served within {fm_notice}."},
            {"s": ["\"Force Majeure Event\" means any circumstance not within a party's reasonable control, including: (i) acts of God, flood, drought, earthquake or other natural disaster; (ii) epidemic or pandemic; (iii) terrorist attack, civil war, civil commotion or riots; [(iv) nuclear, chemical or biological contamination|(iv) interruption or failure of a utility service]; and (v) [collapse of buildings, fire or explosion|fire, explosion or accidental damage].[| Inability to pay is not a Force Majeure Event.]"],
             "f": {"pandemic": "yes"},
             "sum": "Defines force majeure events as circumstances beyond a party's control, listing natural disasters, pandemics, terrorism, contamination and fire."},
            # eval
            {"s": ["Should performance by either party be hindered or prevented by an occurrence outside its control, for instance a hurricane, a cyber-attack on critical infrastructure, an embargo or a general strike, that party's obligations are suspended for as long as the occurrence lasts, and if it lasts beyond {fm_days} the other party may cancel this Agreement without liability."],
             "sum": "Suspends obligations during events outside a party's control and lets the other party cancel without liability if the event lasts beyond {fm_days}."},
            {"s": ["{A_cap} shall not be in breach of contract nor liable for delay in performing any of its obligations if the delay is due to a Force Majeure Event, provided it gives written notice to {B} within {fm_notice} and resumes performance as soon as reasonably possible."],
             "sum": "Relieves {A} from liability for force majeure delays if it notifies {B} within {fm_notice} and resumes performance promptly."},
            {"s": ["Where an Exceptional Event (such as a pandemic, sanctions or the failure of a public utility) makes delivery impossible, the parties' obligations are paused; {B} may cancel any Order that remains unfulfilled {fm_days} after the Exceptional Event began, but must still pay for goods already delivered."],
             "f": {"who": "{B}", "pay": "no", "pandemic": "yes"},
             "sum": "Pauses obligations during exceptional events and lets {B} cancel orders still unfulfilled after {fm_days}, while paying for goods already delivered."},
        ],
        "qa": [
            {"q": ["After how long can the agreement be terminated?", "How long must the event last before termination is allowed?"],
             "a": "After {fm_days}."},
            {"q": ["Within what time must a force majeure event be notified?", "How quickly must the affected party give notice?"],
             "a": "Within {fm_notice}."},
            {"q": ["Does force majeure excuse payment obligations?", "Can a party delay payment because of force majeure?"],
             "a": "No. Payment obligations are not excused.", "need": ["pay"]},
            {"q": ["Who may terminate or cancel?", "Which party gets the termination right?"],
             "a": "{who_cap}."},
            {"q": ["Is a pandemic a force majeure event?", "Are epidemics covered?"],
             "a": "Yes, pandemics are expressly listed.", "need": ["pandemic"]},
        ],
    },
    "payment_terms": {
        "heads": ["Payment Terms", "Fees and Payment", "Invoicing and Payment", "Charges"],
        "forms": [
            {"s": ["{B_cap} shall pay each invoice within {due} of the date of receipt.",
                   "Late payments shall bear interest at the rate of {rate_m} per month or the maximum rate permitted by law, whichever is lower."],
             "f": {"late": "{rate_m} per month (or the legal maximum, if lower)", "dueby": "within {due} of receipt of the invoice"},
             "sum": "Requires {B} to pay invoices within {due} of receipt, with late interest at {rate_m} per month or the legal maximum if lower."},
            {"s": ["{A_cap} will invoice the Fees {freq}.",
                   "Invoices are payable in {currency_name} within {due} of the invoice date by bank transfer to the account specified on the invoice."],
             "f": {"dueby": "within {due} of the invoice date, by bank transfer in {currency_name}"},
             "sum": "Has {A} invoice the fees {freq}, payable by bank transfer in {currency_name} within {due} of the invoice date."},
            {"s": ["If {B} disputes any part of an invoice in good faith, it shall notify {A} within {disp} of receipt and pay the undisputed portion by the due date, and the parties shall work together to resolve the dispute promptly."],
             "f": {"dispute": "notify {A} within {disp} of receipt and pay the undisputed portion by the due date"},
             "sum": "Sets a process for disputed invoices: notice within {disp} and payment of the undisputed portion on time."},
            {"s": ["All amounts are exclusive of VAT, which {B} shall pay in addition at the applicable rate.",
                   "Payment is due {due} from the end of the month in which the invoice is issued."],
             "f": {"dueby": "{due} from the end of the month in which the invoice is issued", "vat": "exclusive of VAT, which {B} pays in addition"},
             "sum": "States that prices exclude VAT and makes payment due {due} after the end of the invoice month."},
            {"s": ["If any undisputed amount remains unpaid for more than {due} after its due date, {A} may, on {notice_p} written notice, suspend the Services until payment is received in full."],
             "f": {"susp": "yes, if an undisputed amount is unpaid more than {due} after its due date, on {notice_p} written notice"},
             "sum": "Allows {A} to suspend services on {notice_p} notice if undisputed amounts are more than {due} overdue."},
            {"s": ["The Fees of {amount} per {unit} shall be paid {freq}; interest on overdue sums accrues daily at {rate_a} per annum above the base rate of {bank} from time to time."],
             "f": {"late": "{rate_a} per annum above the base rate of {bank}", "price": "{amount} per {unit}"},
             "sum": "Sets fees of {amount} per {unit}, payable {freq}, with interest on overdue sums at {rate_a} a year above the base rate of {bank}."},
            # eval
            {"s": ["You need to pay our invoices within {due} of getting them.",
                   "If you pay late, we can charge interest of {rate_m} a month on the overdue amount until it is paid, and we can pause your access after giving you {notice_p} warning."],
             "f": {"late": "{rate_m} a month on the overdue amount", "dueby": "within {due} of receiving them",
                   "susp": "yes, access can be paused after {notice_p} warning"},
             "sum": "Requires invoices to be paid within {due}, with {rate_m} monthly interest on late amounts and possible suspension after {notice_p} warning."},
            {"s": ["Consideration for the Services shall be settled by {B} by electronic funds transfer no later than the {nth} day of the month following the month of service, against a valid tax invoice issued by {A}."],
             "f": {"dueby": "by the {nth} day of the month following the month of service"},
             "sum": "Requires {B} to pay by electronic transfer by the {nth} day of the month after the service month, against a valid tax invoice."},
            {"s": ["{A_cap} may issue its invoice on acceptance of each Milestone; sums shown on an invoice fall due {due} after its date, and any amount {B} wishes to contest must be raised in writing within {disp}, failing which the invoice is deemed accepted."],
             "f": {"dueby": "{due} after the invoice date", "dispute": "raise it in writing within {disp}, or the invoice is deemed accepted"},
             "sum": "Lets {A} invoice on milestone acceptance, payable {due} after the invoice date, with contests to be raised within {disp}."},
        ],
        "qa": [
            {"q": ["When are invoices due?", "What is the payment deadline?", "How long does the customer have to pay?"],
             "a": "{dueby_cap}."},
            {"q": ["What interest applies to late payments?", "What is the late payment interest rate?"],
             "a": "{late_cap}."},
            {"q": ["How should a disputed invoice be handled?", "What must the customer do to dispute an invoice?"],
             "a": "{dispute_cap}."},
            {"q": ["Can the supplier suspend the services for non-payment?", "Is there a right to suspend for late payment?"],
             "a": "{susp_cap}."},
            {"q": ["How often are the fees invoiced?", "What is the invoicing frequency?"],
             "a": "{freq_cap}."},
            {"q": ["Do the amounts include VAT?"],
             "a": "No. They are {vat}."},
            {"q": ["What are the fees?"],
             "a": "{price_cap}."},
        ],
    },
    "intellectual_property_ownership": {
        "heads": ["Intellectual Property", "Ownership of Intellectual Property", "IP Rights", "Ownership"],
        "roles": [("Developer", "Client"), ("Consultant", "Company"), ("Agency", "Client"),
                  ("Supplier", "Customer"), ("Contractor", "Client"), ("Licensor", "Licensee")],
        "forms": [
            {"s": ["All Intellectual Property Rights in the Deliverables shall vest in {B} upon creation, and {A} hereby assigns to {B} all such rights with full title guarantee."],
             "f": {"owner": "{B}", "when": "on creation"},
             "sum": "Vests all IP in the deliverables in {B} on creation, with {A} assigning those rights with full title guarantee."},
            {"s": ["Each party retains ownership of its Background IP.",
                   "{A_cap} grants {B} a non-exclusive, royalty-free, perpetual license to use {A}'s Background IP to the extent necessary to use the Deliverables."],
             "f": {"lic": "a non-exclusive, royalty-free, perpetual licence to use {A}'s Background IP as needed to use the Deliverables", "owner": "each party keeps its own Background IP"},
             "sum": "Keeps each party's background IP with it and gives {B} a perpetual, royalty-free licence to {A}'s background IP to use the deliverables."},
            {"s": ["{A_cap} retains all right, title and interest in and to the {deliv}, including all modifications, enhancements and derivative works, and nothing in this Agreement transfers ownership of any intellectual property to {B}."],
             "f": {"owner": "{A}"},
             "sum": "Confirms {A} owns the {deliv}, including modifications and derivatives, and that no IP passes to {B}."},
            {"s": ["Upon receipt of full payment of the Fees, {A} assigns to {B} all copyright and other intellectual property rights in the bespoke {work} created under this Agreement."],
             "f": {"owner": "{B}", "when": "on receipt of full payment of the Fees"},
             "sum": "Assigns the IP in the bespoke {work} from {A} to {B} once the fees are paid in full."},
            {"s": ["Any invention, improvement or work of authorship conceived by {A} in the course of the engagement shall be the sole and exclusive property of {B}, and {A} will sign any documents reasonably required to perfect {B}'s title."],
             "f": {"owner": "{B}"},
             "sum": "Makes inventions and works created by {A} during the engagement the exclusive property of {B}, with {A} signing documents to perfect title."},
            {"s": ["{B_cap} owns all Customer Data and any reports generated from it.",
                   "{A_cap} may use aggregated, anonymized usage statistics to improve its services, and owns those statistics."],
             "f": {"owner": "{B} (Customer Data and reports); {A} owns aggregated, anonymised usage statistics"},
             "sum": "Gives {B} ownership of its data and reports, while {A} may use and owns anonymised aggregate usage statistics."},
            # eval
            {"s": ["Whatever {A} creates specifically for {B} under this contract belongs to {B} once it has been paid for, but {A} keeps its pre-existing tools, templates and know-how and may reuse them for other clients."],
             "f": {"owner": "{B}", "when": "once it has been paid for"},
             "sum": "Transfers ownership of bespoke work to {B} on payment while {A} keeps and may reuse its pre-existing tools and know-how."},
            {"s": ["Title to all patents, designs, copyright, database rights and other proprietary rights subsisting in the Foreground Results shall be held by {A}, and {B} shall be granted a non-transferable license to exploit such Foreground Results solely within {field}."],
             "f": {"owner": "{A}", "lic": "a non-transferable licence to exploit the Foreground Results solely within {field}"},
             "sum": "Keeps title to the foreground results with {A} and grants {B} a non-transferable licence limited to {field}."},
            {"s": ["The parties acknowledge that the source code, object code and documentation for the {deliv} (the \"Commissioned Materials\") are works made for hire for {B}; to the extent they are not, {A} irrevocably assigns them to {B} on delivery."],
             "f": {"owner": "{B}", "when": "on delivery (as works made for hire)"},
             "sum": "Treats the commissioned {deliv} materials as works made for hire for {B}, with a fallback assignment from {A} on delivery."},
        ],
        "qa": [
            {"q": ["Who owns the intellectual property?", "Who owns the deliverables?", "Which party holds title to the IP?"],
             "a": "{owner_cap}."},
            {"q": ["When does ownership pass?", "At what point are the rights transferred?"],
             "a": "{when_cap}."},
            {"q": ["What license does the other party receive?", "What rights does the licensee get?"],
             "a": "{lic_cap}."},
        ],
    },
    "warranty_disclaimer": {
        "heads": ["Disclaimer of Warranties", "Warranties", "Disclaimer", "No Other Warranties"],
        "forms": [
            {"s": ["EXCEPT AS EXPRESSLY SET OUT IN THIS AGREEMENT, THE {DELIV} IS PROVIDED \"AS IS\" AND {A_UP} DISCLAIMS ALL OTHER WARRANTIES, EXPRESS OR IMPLIED, INCLUDING ANY IMPLIED WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NON-INFRINGEMENT."],
             "upper": True, "f": {"fit": "no", "asis": "yes"},
             "sum": "Provides the {deliv} as is and disclaims all implied warranties, including merchantability, fitness for purpose and non-infringement."},
            {"s": ["{A_cap} warrants that the Services will be performed with reasonable skill and care for a period of {wperiod} from delivery.",
                   "All other warranties, conditions and terms implied by statute or common law are excluded to the fullest extent permitted by law."],
             "f": {"fit": "no"},
             "sum": "Gives a reasonable-skill-and-care warranty lasting {wperiod} and excludes all implied warranties and conditions."},
            {"s": ["{A_cap} does not warrant that the [Services|Software|Platform] will be uninterrupted or error-free[, that it will meet {B}'s requirements|], or that all errors will be corrected."],
             "f": {"errfree": "no"},
             "sum": "Disclaims any warranty that the services will be uninterrupted or error-free or that all errors will be fixed."},
            {"s": ["{A_cap} warrants for {wperiod} from the Delivery Date that the Products will be free from material defects in materials and workmanship; {B}'s sole remedy for breach of this warranty is repair or replacement of the defective Products or, at {A}'s option, a refund of the price paid."],
             "f": {"remedy": "repair or replacement of the defective Products or, at {A}'s option, a refund of the price paid"},
             "sum": "Warrants the products against material defects for {wperiod}, limiting {B}'s remedy to repair, replacement or refund."},
            {"s": ["The Beta Features are made available for evaluation only, without any warranty of any kind, and {A} may modify or withdraw them at any time."],
             "f": {"asis": "yes"},
             "sum": "Offers beta features for evaluation only, with no warranty and subject to change or withdrawal by {A}."},
            {"s": ["Apart from the promises expressly made in this agreement, we give no other promises about the [platform|service|software], including any promise that it will be fit for your specific purpose or of satisfactory quality."],
             "f": {"fit": "no"},
             "sum": "Excludes all promises beyond those expressly made, including fitness for purpose and satisfactory quality."},
            # eval
            {"s": ["TO THE MAXIMUM EXTENT PERMITTED BY APPLICABLE LAW, THE DATA AND REPORTS ARE FURNISHED WITHOUT WARRANTY OF ANY KIND, AND {A_UP} MAKES NO REPRESENTATION AS TO THEIR ACCURACY, COMPLETENESS OR TIMELINESS."],
             "upper": True, "f": {"asis": "yes", "accuracy": "no"},
             "sum": "Furnishes data and reports without any warranty and disclaims accuracy, completeness and timeliness."},
            {"s": ["Save for the limited warranty in clause {ref}, which lasts {wperiod}, {B} accepts that the Licensed Program is supplied without any other guarantee, condition or representation, whether as to quality, fitness for purpose or otherwise."],
             "f": {"fit": "no"},
             "sum": "Supplies the licensed program without guarantees beyond the limited warranty of {wperiod} in clause {ref}, including fitness for purpose."},
            {"s": ["{A_cap} promises only that the hardware will match its published specification for {wperiod}; if it does not, {A} will fix or swap it, and that is {B}'s only remedy, with no other assurance given about performance or suitability."],
             "f": {"remedy": "{A} will fix or swap the hardware", "fit": "no"},
             "sum": "Limits the warranty to conformity with the published specification for {wperiod}, with repair or swap as the only remedy."},
        ],
        "qa": [
            {"q": ["Is fitness for a particular purpose warranted?", "Does the supplier promise the product is fit for purpose?"],
             "a": "No. Fitness for purpose is disclaimed.", "need": ["fit"]},
            {"q": ["How long does the warranty last?", "What is the warranty period?"],
             "a": "{wperiod_cap}."},
            {"q": ["What is the sole remedy for breach of warranty?", "What remedy does the buyer have?"],
             "a": "{remedy_cap}."},
            {"q": ["Is it provided as is?", "Is any warranty given at all?"],
             "a": "It is provided as is, without warranty.", "need": ["asis"]},
            {"q": ["Is the service guaranteed to be error-free?"],
             "a": "No. There is no warranty that it will be uninterrupted or error-free.", "need": ["errfree"]},
            {"q": ["Is the accuracy of the data guaranteed?"],
             "a": "No. No representation is made as to accuracy, completeness or timeliness.", "need": ["accuracy"]},
        ],
    },
    "dispute_resolution": {
        "heads": ["Dispute Resolution", "Arbitration", "Disputes"],
        "forms": [
            {"s": ["Any dispute arising out of or in connection with this Agreement shall be referred to and finally resolved by arbitration under the {rules}, which rules are deemed to be incorporated by reference into this clause.",
                   "The tribunal shall consist of {arbs}.",
                   "The seat of arbitration shall be {seat} and the language of the arbitration shall be English."],
             "sum": "Sends all disputes to arbitration under the {rules}, seated in {seat} before {arbs}, in English."},
            {"s": ["The parties shall attempt in good faith to resolve any dispute through negotiation between their senior executives.",
                   "If the dispute is not resolved within {esc} of a written request for negotiation, either party may refer it to mediation in accordance with the {med}."],
             "f": {"step": "negotiation between senior executives, then mediation under the {med}"},
             "sum": "Requires executive negotiation first and allows mediation under the {med} if unresolved after {esc}."},
            {"s": ["Any controversy or claim arising out of or relating to this contract, or the breach thereof, shall be settled by arbitration administered by {admin} in accordance with its {rules_short}, and judgment on the award rendered by the arbitrator(s) may be entered in any court having jurisdiction thereof.",
                   "The place of arbitration shall be {seat}."],
             "f": {"rulesx": "the {rules_short} of {admin}"},
             "sum": "Submits all claims to arbitration administered by {admin} in {seat}, with the award enforceable in any competent court."},
            {"s": ["Before starting court proceedings, a party must give the other a written notice of the dispute and the parties' project managers must meet within {esc} to try to settle it.",
                   "Nothing in this clause prevents either party from seeking urgent injunctive relief."],
             "f": {"step": "a written dispute notice and a meeting of the project managers", "inj": "yes"},
             "sum": "Requires a dispute notice and a project-manager meeting within {esc} before litigation, while preserving urgent injunctive relief."},
            {"s": ["All disputes shall be finally settled by binding arbitration in {seat} before {arbs} under the {rules}.",
                   "Each party waives its right to a jury trial and to participate in a class action."],
             "f": {"jury": "yes"},
             "sum": "Mandates binding arbitration in {seat} under the {rules} and waives jury trials and class actions."},
            {"s": ["Disputes relating to any invoice shall first be referred to the parties' finance directors; if unresolved within {esc}, the dispute shall be determined by an independent chartered accountant acting as expert and not as arbitrator, whose decision shall be final and binding."],
             "f": {"step": "referral to the finance directors, then expert determination by an independent chartered accountant"},
             "sum": "Routes invoice disputes to the finance directors and then, after {esc}, to binding expert determination by an independent accountant."},
            # eval
            {"s": ["If we disagree about anything under this agreement, we'll first talk it through for up to {esc}; if that fails, the disagreement will go to arbitration in {seat} under the {rules}, decided by {arbs}."],
             "f": {"step": "talking it through for up to {esc}, then arbitration"},
             "sum": "Provides for informal discussion for up to {esc}, then arbitration in {seat} under the {rules} before {arbs}."},
            {"s": ["Any difference between the parties shall be submitted to {arbs} appointed in accordance with the {rules}; the arbitral proceedings shall take place in {seat}, be conducted in the English language, and the award shall be final and binding upon the parties."],
             "sum": "Submits all differences to {arbs} under the {rules}, seated in {seat}, with a final and binding award."},
            {"s": ["Claims of {small} or less may be brought in small-claims court; every other dispute, after a cooling-off period of {esc}, goes exclusively to confidential arbitration seated in {seat} and administered by {admin} under its {rules_short}."],
             "f": {"rulesx": "the {rules_short} of {admin}", "step": "a cooling-off period of {esc}"},
             "sum": "Allows small claims up to {small} in court and sends all other disputes, after a cooling-off period of {esc}, to confidential arbitration in {seat}."},
        ],
        "qa": [
            {"q": ["Where is the arbitration seated?", "What is the seat of arbitration?", "Where will the arbitration take place?"],
             "a": "{seat}."},
            {"q": ["Which arbitration rules apply?", "Under which rules is the arbitration conducted?"],
             "a": "The {rules}."},
            {"q": ["Which institution administers the arbitration and under which rules?"],
             "a": "{rulesx_cap}."},
            {"q": ["How many arbitrators will decide the dispute?", "How is the tribunal composed?"],
             "a": "{arbs_cap}."},
            {"q": ["How long do the parties negotiate before escalating?", "How long is the negotiation period?"],
             "a": "{esc_cap}."},
            {"q": ["What must happen before formal proceedings?", "What is the first step in the dispute process?"],
             "a": "{step_cap}."},
            {"q": ["Can a party still seek an injunction?"],
             "a": "Yes, urgent injunctive relief remains available.", "need": ["inj"]},
            {"q": ["Is a jury trial available?"],
             "a": "No. Each party waives its right to a jury trial.", "need": ["jury"]},
        ],
    },
    "entire_agreement": {
        "heads": ["Entire Agreement", "Whole Agreement", "Integration"],
        "forms": [
            {"s": ["This Agreement constitutes the entire agreement between the parties and supersedes and extinguishes all previous [agreements, promises, assurances, warranties, representations and understandings|drafts, agreements, arrangements and understandings] between them, whether written or oral, relating to its subject matter."],
             "f": {"sup": "yes"},
             "sum": "Makes the agreement the parties' entire agreement, superseding all prior written or oral arrangements on its subject."},
            {"s": ["Each party acknowledges that in entering into this Agreement it does not rely on[, and shall have no remedies in respect of,|] any statement, representation, assurance or warranty[ (whether made innocently or negligently)|] that is not set out in this Agreement.",
                   "Nothing in this clause shall limit or exclude any liability for fraud."],
             "f": {"rely": "no", "fraud": "yes"},
             "sum": "Records that neither party relies on representations outside the agreement, without excluding liability for fraud."},
            {"s": ["This Agreement, together with its Schedules and any Order Forms, is the complete agreement between the parties concerning its subject matter, and may only be amended by a written document signed by {signers} of both parties."],
             "f": {"amend": "only by a written document signed by {signers} of both parties"},
             "sum": "Declares the agreement, schedules and order forms complete and allows amendment only in writing signed by {signers}."},
            {"s": ["This {agreement} sets forth the entire understanding of the parties and supersedes all prior negotiations, proposals and communications, oral or written.",
                   "No terms contained in any purchase order or other document issued by {B} shall apply, even if accepted by {A}."],
             "f": {"sup": "yes", "po": "no"},
             "sum": "Supersedes prior negotiations and excludes terms in {B}'s purchase orders, even if accepted by {A}."},
            {"s": ["In the event of any conflict between these Terms and an Order Form, the Order Form shall [prevail|take precedence], but only in respect of that Order Form; otherwise these Terms, together with the Order Forms, form the entire agreement between the parties."],
             "f": {"prec": "the Order Form, but only in respect of that Order Form"},
             "sum": "Makes the terms and order forms the entire agreement, with the order form prevailing in a conflict for that order only."},
            {"s": ["[This document|This agreement] is the [whole|entire] agreement between us.",
                   "It replaces anything we said or wrote to each other before we signed it, and any change to it only counts if it is in writing and signed by both of us."],
             "f": {"sup": "yes", "amend": "only in writing signed by both parties"},
             "sum": "States this document is the whole agreement, replacing earlier statements, with changes valid only in signed writing."},
            # eval
            {"s": ["The parties agree that this Agreement comprises all of the terms agreed between them regarding the {subject} and that no prior draft, letter of intent, term sheet or correspondence shall have any contractual effect."],
             "f": {"sup": "yes"},
             "sum": "Confirms the agreement contains all agreed terms on the {subject} and denies contractual effect to earlier drafts, term sheets and letters."},
            {"s": ["This Contract embodies the whole of the agreement of the parties and there are no promises, terms, conditions or obligations, oral or written, express or implied, other than those contained herein; no variation shall be effective unless reduced to writing and signed by {signers} of each party."],
             "f": {"sup": "yes", "amend": "only if reduced to writing and signed by {signers} of each party"},
             "sum": "Declares the contract the whole agreement, excludes other terms and requires signed written variations."},
            {"s": ["Where anything in a Statement of Work contradicts this {agreement}, this {agreement} wins unless the Statement of Work expressly says it overrides a named clause; taken together they are everything the parties have agreed, and neither party has relied on a promise that is not written in them."],
             "f": {"prec": "this {agreement}, unless the Statement of Work expressly overrides a named clause", "rely": "no"},
             "sum": "Gives the agreement priority over statements of work unless expressly overridden, and records that together they are the entire agreement without reliance on other promises."},
        ],
        "qa": [
            {"q": ["Does the agreement supersede prior agreements?", "Do earlier discussions still have any effect?"],
             "a": "Yes. It supersedes all prior agreements and communications on its subject matter.", "need": ["sup"]},
            {"q": ["How can the agreement be amended?", "What is required to vary the agreement?"],
             "a": "{amend_cap}."},
            {"q": ["Can a party rely on statements not in the agreement?", "Can pre-contract representations be relied on?"],
             "a": "No. Neither party relies on anything not set out in the agreement.", "need": ["rely"]},
            {"q": ["Is liability for fraud excluded?"],
             "a": "No. Liability for fraud is not limited or excluded.", "need": ["fraud"]},
            {"q": ["Do purchase order terms apply?"],
             "a": "No. Terms in any purchase order issued by {B} do not apply, even if accepted.", "need": ["po"]},
            {"q": ["Which document prevails in a conflict?", "What is the order of precedence?"],
             "a": "{prec_cap}."},
        ],
    },
    "severability": {
        "heads": ["Severability", "Severance", "Invalidity"],
        "forms": [
            {"s": ["If any provision of this Agreement is [found|held|declared] by any court[ or administrative body|, tribunal or administrative body] of competent jurisdiction to be [invalid or unenforceable|invalid, illegal or unenforceable], [such invalidity or unenforceability|this] shall not affect the other provisions of this Agreement, which shall remain in full force and effect."],
             "f": {"rest": "yes"},
             "sum": "Keeps the rest of the agreement in force if a court or authority finds any provision invalid or unenforceable."},
            {"s": ["If any provision or part-provision of this Agreement is or becomes invalid, illegal or unenforceable, it shall be deemed modified to the minimum extent necessary to make it valid, legal and enforceable.",
                   "[If such modification is not possible|Where such modification is not possible|If that cannot be done], the relevant provision or part-provision shall be deemed deleted[.|, without affecting the rest of this Agreement.]"],
             "f": {"fix": "it is modified to the minimum extent necessary to make it valid, or deleted if that is not possible"},
             "sum": "Modifies an invalid provision to the minimum extent needed to make it enforceable, or deletes it if that is impossible."},
            {"s": ["Should any term of this Agreement be held void or unenforceable, the parties shall negotiate in good faith within {neg} to agree a valid replacement provision that achieves, as nearly as possible, the same commercial effect."],
             "f": {"fix": "the parties negotiate a valid replacement with the same commercial effect"},
             "sum": "Requires the parties to negotiate, within {neg}, a valid replacement for any void term with the closest commercial effect."},
            {"s": ["If a court decides that any part of this agreement cannot be enforced, that part will be [removed|taken out] and the rest of the agreement will still apply[.| as if it had never been there.]"],
             "f": {"rest": "yes", "fix": "the unenforceable part is removed"},
             "sum": "Removes any unenforceable part and keeps the rest of the agreement in effect."},
            {"s": ["The invalidity or unenforceability of any provision of this Agreement in any jurisdiction shall not affect the validity or enforceability of that provision in any other jurisdiction or of the remaining provisions [in that jurisdiction|of this Agreement in that jurisdiction]."],
             "f": {"rest": "yes", "other": "no"},
             "sum": "Limits the effect of an invalid provision to the jurisdiction concerned, leaving it valid elsewhere and the rest of the agreement intact."},
            {"s": ["Each of the restrictions in clause {ref} is a separate and severable obligation, and if any of them is held unenforceable but would be valid if some part of it were deleted or the period or area reduced, it shall apply with such modification as may be necessary to make it enforceable."],
             "f": {"fix": "it applies with whatever deletion or reduction in period or area is needed to make it enforceable"},
             "sum": "Makes each restriction in clause {ref} severable and allows it to be cut down in scope, period or area to remain enforceable."},
            # eval
            {"s": ["[Where|If] any stipulation of this Contract is declared null [by a competent authority|by a competent court or authority], the nullity shall be confined to that stipulation, and the parties shall in lieu thereof agree upon a lawful stipulation which comes closest to their original intention."],
             "f": {"rest": "yes", "fix": "the parties agree a lawful replacement closest to their original intention"},
             "sum": "Confines nullity to the affected stipulation and requires the parties to agree a lawful replacement close to their original intent."},
            {"s": ["If one [clause|part] of this agreement turns out to be unlawful[ or unenforceable|], that won't cancel the whole agreement: the unlawful clause is read as narrowly as needed to make it lawful, and everything else stays in place."],
             "f": {"rest": "yes", "fix": "it is read as narrowly as needed to make it lawful"},
             "sum": "Keeps the agreement alive if a clause is unlawful, reading that clause down to make it lawful."},
            {"s": ["A determination that any provision hereof is unenforceable shall not impair the remainder of this {agreement}; the parties shall, within {neg} of such determination, substitute a provision that most nearly reflects their original economic intent."],
             "f": {"rest": "yes", "fix": "the parties substitute a provision reflecting their original economic intent"},
             "sum": "Preserves the remainder of the agreement and requires a substitute provision within {neg} of an unenforceability finding."},
        ],
        "qa": [
            {"q": ["What happens to the rest of the agreement if a provision is invalid?", "Does an invalid clause affect the remaining provisions?"],
             "a": "The remaining provisions stay in full force and effect.", "need": ["rest"]},
            {"q": ["What happens to the invalid provision itself?", "How is an unenforceable provision dealt with?"],
             "a": "{fix_cap}."},
            {"q": ["How long do the parties have to agree a replacement?", "Within what period must a replacement provision be negotiated?"],
             "a": "Within {neg}."},
            {"q": ["Does invalidity in one jurisdiction affect other jurisdictions?"],
             "a": "No. The provision remains valid and enforceable in other jurisdictions.", "need": ["other"]},
        ],
    },
    "notices": {
        "heads": ["Notices", "Notice", "Communications"],
        "forms": [
            {"s": ["Any notice [given|required to be given] under this Agreement shall be in writing and [shall|must] be delivered by hand, by pre-paid first-class post or other next working day delivery service at the recipient's registered office, or by email to the address specified in the Order Form."],
             "f": {"how": "in writing, by hand, by pre-paid first-class post or next working day delivery to the registered office, or by email to the address in the Order Form"},
             "sum": "Requires written notices delivered by hand, post or next-day service to the registered office, or by email to the Order Form address."},
            {"s": ["A notice shall be deemed received: if delivered by hand, at the time the notice is left at the proper address; if sent by pre-paid first-class post, at 9.00 am on the {post_days} Business Day after posting; or if sent by email, {email_time}."],
             "sum": "Sets deemed receipt times for notices: on delivery by hand, 9.00 am on the {post_days} business day after posting, and {email_time} for email."},
            {"s": ["All notices under this Agreement must be in writing and sent by certified mail, return receipt requested, or by nationally recognized overnight courier to the addresses set forth on the signature page[| (or as later updated by notice)], and will be effective upon receipt."],
             "f": {"how": "in writing, by certified mail (return receipt requested) or nationally recognized overnight courier to the signature-page addresses", "eff": "upon receipt"},
             "sum": "Requires written notices by certified mail or overnight courier to the signature-page addresses, effective on receipt."},
            {"s": ["Notices to {A} must be sent to the email address designated for legal notices in the Order Form, with a copy to its General Counsel at its principal place of business.",
                   "Email notices of breach or termination must also be confirmed by courier within {confirm}."],
             "f": {"how": "by email to the designated legal-notices address, copied to {A}'s General Counsel"},
             "sum": "Directs notices to {A}'s designated legal email with a copy to its General Counsel, and requires courier confirmation of breach or termination notices within {confirm}."},
            {"s": ["Notice given by email is not valid for the service of any proceedings or other documents in any legal action, which shall be served in accordance with the applicable rules of court.",
                   "Any other notice may be given by email and is deemed received {email_time}."],
             "f": {"proc": "no"},
             "sum": "Excludes email for service of legal proceedings but allows other notices by email, deemed received {email_time}."},
            {"s": ["Either party may change its address for notices by giving the other party written notice of the new address at least {change} before it takes effect."],
             "sum": "Lets either party change its notice address by giving at least {change} written notice."},
            # eval
            {"s": ["When either of us needs to send the other a formal notice under this agreement, it must be written and sent by recorded delivery or email to the contact details on the cover page; an email counts as received {email_time}."],
             "f": {"how": "in writing, by recorded delivery or email to the contact details on the cover page"},
             "sum": "Requires formal notices in writing by recorded delivery or email to the cover-page contacts, with email treated as received {email_time}."},
            {"s": ["Every communication required hereunder shall be addressed to the intended recipient at its address set out in Schedule 1 (or such other address as it may have notified) and shall be sent by registered airmail or internationally recognized courier, in which case it shall be deemed delivered {courier} after despatch."],
             "f": {"how": "by registered airmail or internationally recognized courier to the Schedule 1 address"},
             "sum": "Requires communications by registered airmail or international courier to the Schedule 1 address, deemed delivered {courier} after despatch."},
            {"s": ["Operational messages may be exchanged through the customer portal, but a notice of default, termination or non-renewal is valid only if delivered by hand or courier to the recipient's registered office, and takes effect {courier} after dispatch unless actually received earlier."],
             "f": {"how": "by hand or courier to the registered office (for default, termination or non-renewal notices)"},
             "sum": "Allows portal messages for operations but requires default, termination and non-renewal notices by hand or courier, effective {courier} after dispatch."},
        ],
        "qa": [
            {"q": ["How must notices be delivered?", "What methods of giving notice are allowed?"],
             "a": "{how_cap}."},
            {"q": ["When is an email notice deemed received?", "When does a notice sent by email take effect?"],
             "a": "{email_time_cap}."},
            {"q": ["When is a posted notice deemed received?"],
             "a": "At 9.00 am on the {post_days} Business Day after posting."},
            {"q": ["How soon must an emailed breach notice be confirmed by courier?"],
             "a": "Within {confirm}."},
            {"q": ["Can legal proceedings be served by email?"],
             "a": "No. Email is not valid for service of proceedings.", "need": ["proc"]},
            {"q": ["How much notice is needed to change a notice address?"],
             "a": "At least {change}, in writing."},
            {"q": ["When is a couriered notice deemed delivered?"],
             "a": "{courier_cap} after despatch."},
        ],
    },
    "auto_renewal": {
        "heads": ["Term and Renewal", "Automatic Renewal", "Renewal", "Term"],
        "forms": [
            {"s": ["This Agreement shall commence on the Effective Date and continue for an initial term of {init} (the \"Initial Term\").",
                   "Thereafter it shall automatically renew for successive periods of {renew} (each a \"Renewal Term\") unless either party gives written notice of non-renewal at least {notice} before the end of the then-current term."],
             "sum": "Sets an initial term of {init} that renews automatically for periods of {renew} unless either party gives {notice_p} notice of non-renewal."},
            {"s": ["Subscriptions renew automatically for additional periods equal to the expiring subscription term unless either party notifies the other of its intention not to renew at least {notice} before the end of the current term.",
                   "Fees for a renewal term may increase by no more than {increase} over the prior term."],
             "f": {"renewx": "a period equal to the expiring subscription term"},
             "sum": "Renews subscriptions automatically for equal terms unless {notice_p} notice is given, capping renewal price increases at {increase}."},
            {"s": ["Unless {B} cancels through its account settings at least {notice} before the renewal date, the Subscription will roll over for a further {renew} and {B}'s payment method will be charged the then-current fee."],
             "sum": "Automatically rolls the subscription over for {renew} and charges {B} unless it cancels at least {notice} before renewal."},
            {"s": ["On expiry of the Initial Term of {init}, this Agreement shall continue on a {rolling} rolling basis until terminated by either party on not less than {roll_notice_p} written notice."],
             "f": {"renewx": "{rolling} rolling periods"},
             "sum": "Continues the agreement on a {rolling} rolling basis after an initial term of {init} until ended on {roll_notice_p} notice."},
            {"s": ["The term of this Agreement is {init} from the Effective Date and renews automatically for further terms of {renew}.",
                   "{A_cap} shall remind {B} in writing of the upcoming renewal not later than {reminder} before each renewal date."],
             "sum": "Sets an initial term of {init} renewing automatically for further terms of {renew}, with {A} sending a renewal reminder at least {reminder} beforehand."},
            {"s": ["THIS AGREEMENT WILL AUTOMATICALLY RENEW FOR CONSECUTIVE TERMS OF {RENEW} UNLESS YOU TELL US NOT TO AT LEAST {NOTICE} BEFORE THE END OF THE CURRENT TERM."],
             "upper": True,
             "sum": "Automatically renews the agreement for consecutive terms of {renew} unless the customer opts out at least {notice} before the term ends."},
            # eval
            {"s": ["After the first {init}, this contract keeps going for another {renew} each time it reaches its end date, unless one of the parties writes to the other at least {notice} before that date to say it should stop."],
             "sum": "Extends the contract by {renew} each time it ends after the first {init}, unless a party gives written notice at least {notice} beforehand."},
            {"s": ["Upon expiration of the Initial Period of {init}, the License shall be extended by tacit renewal for consecutive periods of {renew}, save where terminated by registered letter sent no later than {notice} prior to the expiry of the period in progress."],
             "sum": "Tacitly renews the licence for periods of {renew} after an initial period of {init} unless ended by registered letter {notice} before expiry."},
            {"s": ["The Services start on the Go-Live Date and run for {init}; at the end of that period and of each later period they continue for a further {renew} at prices that may rise by up to {increase}, unless {B} opts out in writing {notice} or more before the period ends."],
             "sum": "Runs the services for {init} and then renews them for periods of {renew} with price rises of up to {increase}, unless {B} opts out {notice} in advance."},
        ],
        "qa": [
            {"q": ["How long is the initial term?", "What is the length of the initial term?"],
             "a": "{init_cap}."},
            {"q": ["How long is each renewal term?", "For how long does the agreement renew?"],
             "a": "{renew_cap}."},
            {"q": ["What renewal period applies?"],
             "a": "{renewx_cap}."},
            {"q": ["How much notice is needed to stop the renewal?", "What is the deadline for giving notice of non-renewal?"],
             "a": "At least {notice} before the end of the current term."},
            {"q": ["How much notice ends the rolling term?"],
             "a": "{roll_notice_p_cap} written notice."},
            {"q": ["By how much can fees increase on renewal?", "Is there a cap on renewal price increases?"],
             "a": "By no more than {increase}."},
            {"q": ["When will the renewal reminder be sent?"],
             "a": "No later than {reminder} before each renewal date."},
        ],
    },
    "audit_rights": {
        "heads": ["Audit", "Audit Rights", "Records and Audit", "Inspection"],
        "roles": [("Licensor", "Licensee"), ("Supplier", "Customer"), ("Company", "Distributor"),
                  ("Provider", "Client"), ("Franchisor", "Franchisee")],
        "forms": [
            {"s": ["{B_cap} shall keep complete and accurate records relating to its use of the {deliv} and the fees payable under this Agreement, and shall retain them for at least {retain} after the end of this Agreement."],
             "f": {"keeper": "{B}"},
             "sum": "Requires {B} to keep accurate records of its use and fees and retain them for {retain} after the agreement ends."},
            {"s": ["{A_cap} may, no more than {audit_freq} and on at least {audit_notice} prior written notice, audit {B}'s records to verify compliance with this Agreement.",
                   "Any audit shall be conducted during normal business hours and in a manner that does not unreasonably interfere with {B}'s operations."],
             "f": {"auditor": "{A}"},
             "sum": "Allows {A} to audit {B}'s records {audit_freq} on {audit_notice} notice, during business hours and without unreasonable disruption."},
            {"s": ["If an audit reveals an underpayment of more than {shortfall} for any period, {B} shall pay the underpaid amount together with the reasonable costs of the audit within {due} of being notified."],
             "f": {"cost": "{B} pays the reasonable audit costs if an underpayment of more than {shortfall} is found"},
             "sum": "Makes {B} pay any underpayment plus audit costs within {due} if an audit finds a shortfall above {shortfall}."},
            {"s": ["{B_cap}, or an independent auditor appointed by it and bound by confidentiality obligations, may inspect {A}'s facilities and records relating to the processing of {B}'s data once in {period}, on giving {audit_notice} notice."],
             "f": {"auditor": "{B} or an independent auditor it appoints"},
             "sum": "Lets {B} or its independent auditor inspect {A}'s data-processing facilities and records once in {period} on {audit_notice} notice."},
            {"s": ["Upon reasonable notice, {A} and its regulators shall be entitled to access {B}'s premises, systems and personnel for the purpose of auditing compliance with clauses {ref} and {ref2}."],
             "f": {"auditor": "{A} and its regulators"},
             "sum": "Gives {A} and its regulators access to {B}'s premises, systems and staff on reasonable notice to audit compliance."},
            {"s": ["We can check your books and records relating to royalties once a year, giving you at least {audit_notice} notice.",
                   "If we find that you underpaid by more than {shortfall}, you must pay for the check as well as the shortfall."],
             "f": {"auditor": "the licensor (\"we\")", "cost": "the licensee pays if the underpayment exceeds {shortfall}"},
             "sum": "Allows an annual royalty audit on {audit_notice} notice, with the licensee paying the audit cost if it underpaid by more than {shortfall}."},
            # eval
            {"s": ["{B_cap} shall permit {A}'s nominated accountants, upon not less than {audit_notice} written notice and not more than {audit_freq}, to inspect and take copies of the books of account relating to Net Sales, the cost of which shall be borne by {A} unless a shortfall exceeding {shortfall} is discovered."],
             "f": {"auditor": "{A}'s nominated accountants", "cost": "{A}, unless a shortfall exceeding {shortfall} is discovered"},
             "sum": "Lets {A}'s accountants inspect {B}'s Net Sales records {audit_freq} on {audit_notice} notice, at {A}'s cost unless a shortfall over {shortfall} is found."},
            {"s": ["For the duration of this Agreement and {retain} thereafter, {A} shall maintain documentation evidencing its compliance with the Security Schedule and shall make such documentation available to {B} for inspection within {audit_notice} of a written request."],
             "f": {"keeper": "{A}", "auditor": "{B}"},
             "sum": "Requires {A} to keep security-compliance documentation for the term plus {retain} and provide it to {B} within {audit_notice} of a request."},
            {"s": ["Once each Contract Year, on {audit_notice} notice, {A} may send an independent auditor to verify the number of installations of the {deliv} deployed by {B}; any excess installations found shall be invoiced at the then-current list price, and {B} shall bear the audit fees if the excess exceeds {shortfall}."],
             "f": {"auditor": "an independent auditor sent by {A}", "cost": "{B}, if the excess exceeds {shortfall}"},
             "sum": "Lets {A} have an independent auditor count {B}'s installations yearly, invoicing excess use and charging audit fees if the excess is above {shortfall}."},
        ],
        "qa": [
            {"q": ["How often may audits be carried out?", "What is the audit frequency?"],
             "a": "No more than {audit_freq}."},
            {"q": ["How much notice must be given before an audit?", "What notice is required for an audit?"],
             "a": "{audit_notice_cap}."},
            {"q": ["Who bears the cost of the audit?", "Who pays for the audit?"],
             "a": "{cost_cap}."},
            {"q": ["How long must records be kept?", "What is the record retention period?"],
             "a": "{retain_cap} after the end of the agreement."},
            {"q": ["Who may carry out the audit?", "Who has the audit right?"],
             "a": "{auditor_cap}."},
            {"q": ["How quickly must an underpayment be paid?"],
             "a": "Within {due} of being notified."},
        ],
    },
    "data_protection": {
        "heads": ["Data Protection", "Data Processing", "Personal Data", "Privacy"],
        "roles": [("Processor", "Controller"), ("Supplier", "Customer"), ("Service Provider", "Client"),
                  ("Vendor", "Company"), ("Provider", "Customer")],
        "forms": [
            {"s": ["Each party shall comply with its obligations under the {dplaw} in relation to any Personal Data [processed under|processed in connection with] this Agreement[.| and shall not knowingly cause the other party to breach its own obligations under that law.]"],
             "sum": "Requires each party to comply with the {dplaw} for personal data processed under the agreement."},
            {"s": ["{A_cap} shall notify {B} without undue delay, and in any event within {hours}, after becoming aware of a Personal Data Breach affecting {B}'s Personal Data."],
             "sum": "Obliges {A} to notify {B} of a personal data breach without undue delay and within {hours}."},
            {"s": ["{A_cap} shall process Personal Data only on the documented instructions of {B}, including with regard to transfers of Personal Data outside {region}, unless required to do so by applicable law."],
             "f": {"instr": "only on {B}'s documented instructions"},
             "sum": "Limits {A}'s processing, including transfers outside {region}, to {B}'s documented instructions."},
            {"s": ["{A_cap} shall not engage any sub-processor without {B}'s prior {consent} written authorization, and shall give {B} at least {sub_notice} notice of any intended change so that {B} may object."],
             "sum": "Requires {B}'s prior {consent} written authorisation for sub-processors and {sub_notice} notice of changes so {B} can object."},
            {"s": ["On termination of the Services, {A} shall, at {B}'s choice, delete or return all Personal Data within {del_days} and delete existing copies unless retention is required by law."],
             "sum": "Requires {A} to delete or return all personal data within {del_days} of the services ending, at {B}'s choice."},
            {"s": ["{A_cap} shall [implement|implement and maintain] appropriate technical and organizational measures to protect Personal Data against unauthorized or unlawful processing and against accidental loss, destruction or damage, including encryption of data at rest and in transit."],
             "f": {"sec": "appropriate technical and organisational measures, including encryption of data at rest and in transit"},
             "sum": "Requires {A} to apply appropriate technical and organisational security measures, including encryption at rest and in transit."},
            # eval
            {"s": ["Where {A} handles personal information on {B}'s behalf, it will act only as a service provider under the {dplaw}, will not sell or share that information, and will tell {B} within {hours} if it is ever accessed without permission."],
             "f": {"sell": "no"},
             "sum": "Makes {A} act only as a service provider under the {dplaw}, bars selling or sharing personal information and requires notice of unauthorised access within {hours}."},
            {"s": ["{A_cap} shall ensure that persons authorized to process the Personal Data have committed themselves to confidentiality, shall assist {B} in responding to data subject requests, and shall delete all Personal Data within {del_days} of the end of the provision of services."],
             "sum": "Requires {A} to bind its staff to confidentiality, help {B} with data subject requests and delete personal data within {del_days} after the services end."},
            {"s": ["No Personal Data may leave {region} unless {B} has first approved the transfer in writing and an adequate safeguard is in place; {A} shall report any suspected compromise of such data to {B} within {hours}."],
             "f": {"instr": "only with {B}'s prior written approval and an adequate safeguard"},
             "sum": "Bars transfers of personal data outside {region} without {B}'s approval and safeguards, and requires breach reports within {hours}."},
        ],
        "qa": [
            {"q": ["Within what time must a data breach be notified?", "How quickly must a breach be reported?"],
             "a": "Within {hours}."},
            {"q": ["Which data protection law applies?", "Which privacy law must the parties comply with?"],
             "a": "The {dplaw}."},
            {"q": ["What happens to the personal data when the services end?", "How long does the processor have to delete the data?"],
             "a": "It must be deleted (or returned) within {del_days}."},
            {"q": ["Can sub-processors be used freely?", "What is needed to appoint a sub-processor?"],
             "a": "No. {B_cap}'s prior {consent} written authorisation is required, with {sub_notice} notice of changes."},
            {"q": ["Can personal data be transferred abroad?", "On what basis can data leave the region?"],
             "a": "{instr_cap}."},
            {"q": ["What security measures are required?"],
             "a": "{sec_cap}."},
            {"q": ["May the service provider sell the personal information?"],
             "a": "No. It will not sell or share the information.", "need": ["sell"]},
        ],
    },
}

QA_FRAMES = [
    "Clause: {clause}\n\nQuestion: {q}",
    "{clause}\n\n{q}",
    "Read the clause below and answer from it only.\n\n{clause}\n\nQ: {q}",
    "Here is a clause from our {agreement_l}:\n\"{clause}\"\n{q}",
    "{q}\n\n{clause}",
    "Based only on this clause, {q_l}\n\n{clause}",
]
CLASSIFY_FRAME = "Classify this clause: {clause}"


def fix_possessive(text):
    """'30 days prior notice' -> '30 days' prior notice'; '1 month notice' -> '1 month's notice'."""
    text = re.sub(r"\b((?:Business )?(?:Days|days|months|years|hours|weeks))"
                  r"( (?:prior|written|advance|notice|warning)\b)", r"\1'\2", text)
    text = re.sub(r"\b(day|month|year|week)( (?:prior|written|advance|notice|warning)\b)",
                  r"\1's\2", text)
    return re.sub(r"\b(DAYS|MONTHS|YEARS)( (?:PRIOR|WRITTEN|NOTICE)\b)", r"\1'\2", text)


def spell(text, uk):
    text = fix_possessive(text)
    for us, gb in SPELLING:
        a, b = (us, gb) if uk else (gb, us)
        if a != b:
            text = re.sub(r"\b%s\b" % re.escape(a), b, text)
    return text


def legal_ctx(rng, cat, form):
    j = rng.choice(JURISDICTIONS)
    roles = form.get("roles") or cat.get("roles") or DEFAULT_ROLES
    a_role, b_role = rng.choice(roles)
    if not form.get("roles") and rng.random() < 0.2:
        a, b = rng.sample(NAMED, 2)
        A, B = a, b
    else:
        A, B = "the " + a_role, "the " + b_role
    c = {"A": A, "B": B, "A_cap": cap(A), "B_cap": cap(B),
         "A_UP": A.upper(),
         "law": j[0], "courts": j[1], "uk": j[2] if rng.random() < 0.85 else not j[2],
         "cur": j[3], "currency_name": j[4], "dplaw": j[5], "region": j[6],
         "formal": rng.random() < 0.5,
         "agreement": rng.choice(AGREEMENTS),
         "ref": "%d.%d" % (rng.randint(2, 25), rng.randint(1, 9)),
         "ref2": "%d.%d" % (rng.randint(2, 25), rng.randint(1, 9))}
    c["agreement_l"] = c["agreement"].lower() if c["agreement"] != "Agreement" else "agreement"
    return c


_ALT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")


def pick_alternatives(rng, tmpl):
    """Resolve [a|b|c] alternatives in a clause template."""
    return _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), tmpl)


def render_clause(rng, cat_name, cat, form, c):
    slots = legal_facts(rng, c)
    slots.update(c)
    who = rng.choice(["either party", "either party", c["B"], c["A"]])
    slots["who"], slots["who_cap"] = who, cap(who)
    slots["DELIV"] = slots["deliv"].upper()
    for k in list(slots):
        if isinstance(slots[k], str):
            slots.setdefault(k + "_cap", cap(slots[k]))
    resolved = [pick_alternatives(rng, s) for s in form["s"]]
    sentences = [s.format(**slots) for s in resolved]
    sentences = [cap(s) for s in sentences]
    if form.get("upper"):
        sentences = [s.upper() for s in sentences]
    sentences = [spell(s, c["uk"]) for s in sentences]
    used = set()
    for s in resolved:
        used |= fields(s)
    extra = {k: spell(v.format(**slots), c["uk"]) for k, v in form.get("f", {}).items()}
    for k, v in extra.items():
        slots[k], slots[k + "_cap"] = v, cap(v)
    for u in list(used):
        if u.endswith("_p"):
            used.add(u[:-2])
        if u.isupper():
            used.add(u.lower())
        if u == "A_UP":
            used.add("A")
    avail = used | set(extra) | {u + "_cap" for u in used | set(extra)}
    # layout: numbering, optional heading, sub-clauses
    num = rng.randint(2, 28)
    head = rng.choice(cat["heads"]) if rng.random() < 0.2 else None
    style = rng.choice(["plain", "plain", "num", "section", "clause", "subnum"])
    if head and rng.random() < 0.3:
        head = head.upper()
    if len(sentences) > 1 and rng.random() < 0.4:
        body = "\n".join("%d.%d %s" % (num, i + 1, s) for i, s in enumerate(sentences))
        first = {"plain": "", "num": "%d. " % num, "section": "Section %d. " % num,
                 "clause": "Clause %d " % num, "subnum": "%d. " % num}[style]
        if head:
            body = "%s%s\n%s" % (first, head + ("" if head.isupper() else "."), body)
        elif first:
            body = "%s\n%s" % (first.strip(), body)
    else:
        body = " ".join(sentences)
        pre = {"plain": "", "num": "%d. " % num, "section": "Section %d. " % num,
               "clause": "Clause %d: " % num, "subnum": "%d.%d " % (num, rng.randint(1, 6))}[style]
        if head:
            pre += head + ("" if head.isupper() else ".") + " "
        body = pre + body
    return body, slots, avail


def legal_record(rng, cat_name, split, kind):
    cat = CATEGORIES[cat_name]
    forms = cat["forms"]
    pool = forms[-EVAL_FORMS:] if split == "eval" else forms[:-EVAL_FORMS]
    for _ in range(50):
        form = rng.choice(pool)
        c = legal_ctx(rng, cat, form)
        clause, slots, avail = render_clause(rng, cat_name, cat, form, c)
        if kind == "classify":
            summary = spell(cap(form["sum"].format(**slots)), c["uk"])
            user = CLASSIFY_FRAME.format(clause=clause)
            answer = "Category: %s\n%s" % (cat_name, summary)
            return record(LEGAL_SYSTEM, [(user, answer)], cat_name)
        qas = []
        for qa in cat["qa"]:
            need = fields(qa["a"]) | set(qa.get("need", ()))
            for q in qa["q"]:
                need |= fields(q)
            if need <= avail:
                qas.append(qa)
        if not qas:
            continue
        qa = rng.choice(qas)
        q = rng.choice(qa["q"]).format(**slots)
        answer = spell(cap(qa["a"].format(**slots)), c["uk"])
        frame = rng.choice(QA_FRAMES)
        user = frame.format(clause=clause, q=q, q_l=q[0].lower() + q[1:],
                            agreement_l=spell(c["agreement_l"], c["uk"]))
        return record(LEGAL_SYSTEM, [(user, answer)], cat_name)
    raise RuntimeError("no question fits %s (%s)" % (cat_name, split))


def legal_make(rng, label, split, qa):
    return legal_record(rng, label, split, "qa" if qa else "classify")


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------

def generate(seed):
    rng = random.Random(seed)
    out = {}
    # customer support: eval first, then train kept away from it
    labels = sorted(INTENTS)
    ev = build_split(rng, labels, 100, support_record, "eval", None, multi_share=0.10)
    guard = Similarity()
    for r in ev:
        guard.add(prompt_text(r))
    tr = build_split(rng, labels, 400, support_record, "train", guard, multi_share=0.10)
    out["customer-support"] = (tr, ev)
    # legal: 60% classification, 40% questions, per category
    labels = sorted(CATEGORIES)
    ev = build_split(rng, labels, 100, legal_make, "eval", None, multi_share=0.40, stratify=True)
    guard = Similarity()
    for r in ev:
        guard.add(prompt_text(r))
    tr = build_split(rng, labels, 400, legal_make, "train", guard, multi_share=0.40, stratify=True)
    out["legal"] = (tr, ev)
    return out


def dumps(records):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", default=HERE, help="output folder (default: next to this script)")
    ap.add_argument("--check", action="store_true",
                    help="compare with the files on disk instead of writing them")
    args = ap.parse_args()
    data = generate(args.seed)
    differ = False
    for name, (tr, ev) in data.items():
        for split, recs in (("train", tr), ("eval", ev)):
            path = os.path.join(args.out, name, split + ".jsonl")
            text = dumps(recs)
            if args.check:
                try:
                    with open(path, encoding="utf-8") as f:
                        same = f.read() == text
                except FileNotFoundError:
                    same = False
                print("%-40s %s" % (path, "up to date" if same else "DIFFERS"))
                differ |= not same
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            print("wrote %s (%d records)" % (path, len(recs)))
        guard = Similarity()
        for r in ev:
            guard.add(prompt_text(r))
        worst = max(guard.max_sim(prompt_text(r)) for r in tr)
        print("  %s: max word-3-gram Jaccard, train prompt vs eval prompts: %.3f" % (name, worst))
    if differ:
        sys.exit(1)


if __name__ == "__main__":
    main()
