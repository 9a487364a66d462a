"""Index-time ablations of memoryd's hybrid retrieval on LoCoMo, cross-validated.

`memoryd eval locomo --cv` cross-validates the query-time weights (lexical weight,
neighbour weight, BM25 b) through the real engine. Stemming and indexing the date are
index-time choices that cannot be switched per request, so this script re-implements
the same ranking (BM25 per conversation, Lucene idf, NLTK English stop words, Snowball
stemming, min-max fusion over the top-100 candidates of each channel, neighbour
expansion within a session) on all-MiniLM-L6-v2 embeddings from sentence-transformers,
and reports leave-one-conversation-out recall with and without each addition.

    python3 -m pip install sentence-transformers PyStemmer numpy   # e.g. in a venv
    python3 benches/hybrid/ablate.py ../shared/data/locomo/locomo10.json models/all-MiniLM-L6-v2

Takes ~10 minutes on 2 cores (embedding 7,868 texts, then 4 x 50 settings).
"""

import datetime
import itertools
import json
import math
import re
import sys
from collections import Counter, defaultdict

import numpy as np
import Stemmer
from sentence_transformers import SentenceTransformer

# NLTK's English list, as the `stop-words` crate ships it (apostrophe forms dropped:
# the tokenizer splits on them).
STOP = set("""a about above after again against ain all am an and any are aren as at be
because been before being below between both but by can couldn d did didn do does doesn
doing don down during each few for from further had hadn has hasn have haven having he her
here hers herself him himself his how i if in into is isn it its itself just ll m ma me
mightn more most mustn my myself needn no nor not now o of off on once only or other our
ours ourselves out over own re s same shan she should shouldn so some such t than that the
their theirs them themselves then there these they this those through to too under until up
ve very was wasn we were weren what when where which while who whom why will with won
wouldn y you your yours yourself yourselves""".split())
STEM = Stemmer.Stemmer("english")


def terms(text, stem):
    words = [w for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOP]
    return STEM.stemWords(words) if stem else words


def norm_id(raw):
    m = re.fullmatch(r"D:?(\d+):(\d+)", raw.strip())
    return f"D{int(m.group(1))}:{int(m.group(2))}" if m else None


def load(path):
    turns, questions = [], []
    for c, s in enumerate(json.load(open(path))):
        conv = s["conversation"]
        keys = sorted((k for k in conv if re.fullmatch(r"session_\d+", k)), key=lambda k: int(k[8:]))
        for k in keys:
            when = datetime.datetime.strptime(conv[k + "_date_time"], "%I:%M %p on %d %B, %Y")
            for t in conv[k]:
                text = t["text"] + (f" [shares {t['blip_caption']}]" if t.get("blip_caption") else "")
                turns.append(dict(conv=c, session=int(k[8:]), when=when, dia=norm_id(t["dia_id"]),
                                  text=f"{t['speaker']}: {text}"))
        ids = {t["dia"] for t in turns if t["conv"] == c}
        for q in s["qa"]:
            ev = [i for raw in q.get("evidence", []) for p in re.split(r"[;, ]", raw)
                  if (i := norm_id(p)) in ids]
            if ev:
                questions.append(dict(conv=c, q=q["question"], cat=q["category"], ev=list(dict.fromkeys(ev))))
    return turns, questions


def bm25_scores(docs, query, k1, b):
    n = len(docs)
    dl = np.array([len(d) for d in docs], float)
    df = Counter(w for d in docs for w in set(d))
    s = np.zeros(n)
    for w in set(query):
        if w not in df:
            continue
        idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
        tf = np.array([d.count(w) for d in docs], float)
        s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / dl.mean()))
    return s


def main(path, model_dir):
    turns, questions = load(path)
    model = SentenceTransformer(model_dir, device="cpu")
    te = model.encode([t["text"] for t in turns], batch_size=32, normalize_embeddings=True)
    qe = model.encode([q["q"] for q in questions], batch_size=32, normalize_embeddings=True)
    convs = defaultdict(list)
    for i, t in enumerate(turns):
        convs[t["conv"]].append(i)
    results = {}
    for stem, date in itertools.product([False, True], [False, True]):
        docs = {c: [terms(turns[i]["text"] + (" " + turns[i]["when"].strftime("%d %B %Y") if date else ""), stem)
                    for i in idx] for c, idx in convs.items()}
        for b in (0.4, 0.75):
            lex = [bm25_scores(docs[q["conv"]], terms(q["q"], stem), 1.2, b) for q in questions]
            for w, beta in itertools.product([0.3, 0.4, 0.5, 0.6, 0.7], [0, 0.2, 0.4, 0.5, 0.6]):
                rows = []
                for qi, q in enumerate(questions):
                    idx = convs[q["conv"]]
                    L, D = lex[qi], te[idx] @ qe[qi]
                    ses = np.array([turns[i]["session"] for i in idx])
                    pool = set(np.argsort(-D)[:100]) | {i for i in np.argsort(-L)[:100] if L[i] > 0}
                    P = np.array(sorted(pool))
                    dn = np.clip((D - D[P].min()) / (D[P].max() - D[P].min()), 0, None)
                    ln = L / L[P].max() if L[P].max() > 0 else 0 * L
                    base = w * ln + (1 - w) * dn
                    same_prev = np.r_[False, ses[1:] == ses[:-1]]
                    same_next = np.r_[ses[1:] == ses[:-1], False]
                    member = np.zeros(len(idx), bool)
                    member[P] = True
                    if beta > 0:
                        in_pool = member.copy()
                        member[1:] |= in_pool[:-1] & same_prev[1:]
                        member[:-1] |= in_pool[1:] & same_next[:-1]
                    bm = np.where(member, base, 0.0)
                    nb = np.maximum(np.r_[0, bm[:-1]] * same_prev, np.r_[bm[1:], 0] * same_next)
                    final = np.where(member, base + beta * nb, -np.inf)
                    top = [turns[idx[i]]["dia"] for i in np.argsort(-final, kind="stable")[:10]]
                    ev = set(q["ev"])
                    rows.append([len(ev & set(top[:5])) / len(ev), len(ev & set(top)) / len(ev)])
                results[(stem, date, b, w, beta)] = np.array(rows)
        print(f"stem={stem} date={date} done", file=sys.stderr)
    conv = np.array([q["conv"] for q in questions])

    def cv(keys):
        held = np.zeros((len(questions), 2))
        for c in range(10):
            best = max(keys, key=lambda k: results[k][conv != c].mean())
            held[conv == c] = results[best][conv == c]
        return held.mean(0)

    print("| stemming | date words | neighbours | held-out R@5 | held-out R@10 |")
    print("|---|---|---|---|---|")
    for stem, date, nb in itertools.product([False, True], [False, True], [False, True]):
        keys = [k for k in results if k[0] == stem and k[1] == date and (k[4] > 0) == nb]
        r5, r10 = cv(keys)
        print(f"| {'yes' if stem else 'no'} | {'yes' if date else 'no'} | {'yes' if nb else 'no'} | {r5:.3f} | {r10:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
