"""Offline comparison of hybrid ranking rules on both datasets' dumped channel scores
(`benches/hybrid/dump_scores.py`), so a rule is chosen on one dataset and reported on
the other.

    python3 benches/hybrid/fusion.py out-locomo.json out-lme.json "session boost" "own cap"

Re-implements `search::hybrid::rank` (top-`candidates` of each channel, cosine min-max
normalized and BM25 divided by its maximum over that pool, base = w·lexical + (1 − w)·
dense, plus neighbour_weight · the best neighbour's base, plus session_weight · the best
base in the turn's session) and variants of it: a neighbour length ratio, a cap on the
length of a turn that may borrow (here in words; the engine counts analyzed terms:
stop words out, date words in), a per-session diversity penalty. The baseline's figures must match
`memoryd eval` (printed first, as a check: they did, to the third decimal, for dense,
lexical and the default before issue #15). `rank`'s own defaults are that old default
(neighbour 0.6, no session weight, no cap); its cap counts words, so no setting here is
exactly the engine's new default, and it groups turns by session id only (the engine
counts a message without one as a session of its own; both datasets set one). Families to compare are named on the command line; for
each, the best setting on one dataset (LoCoMo: mean of R@5 and R@10; LongMemEval: mean
of turn@5 and turn@10) is reported on the other. numpy only.
"""

import itertools
import json
import sys
from collections import defaultdict

import numpy as np


class Namespace:
    def __init__(self, turns):
        self.ids = [t["id"] for t in turns]
        self.index = {t: i for i, t in enumerate(self.ids)}
        self.session = [t["session"] for t in turns]
        self.role = [t["role"] for t in turns]
        self.words = np.array([max(t["words"], 1) for t in turns], float)
        n = len(turns)
        self.prev = [i - 1 if i > 0 and self.session[i - 1] == self.session[i] else None for i in range(n)]
        self.next = [i + 1 if i + 1 < n and self.session[i + 1] == self.session[i] else None for i in range(n)]


def load(path):
    d = json.load(open(path))
    spaces = {ns: Namespace(t) for ns, t in d["namespaces"].items()}
    qs = []
    for q in d["questions"]:
        sp = spaces[q["ns"]]
        n = len(sp.ids)
        dense = np.full(n, -1.0)
        for t, s in q["dense"].items():
            dense[sp.index[t]] = s
        lex = np.zeros(n)
        for t, s in q["lex"].items():
            lex[sp.index[t]] = s
        qs.append(dict(sp=sp, dense=dense, lex=lex, cat=q["cat"], ev=[sp.index[e] for e in q["ev"] if e in sp.index],
                       sessions=q.get("sessions")))
    return qs


def rank(q, w=0.5, nw=0.6, cand=50, ratio=0.0, sess=0.0, diversity=0.0, depth=50, own_cap=0):
    sp, D, L = q["sp"], q["dense"], q["lex"]
    top_d = np.argsort(-D, kind="stable")[:cand]
    lpos = np.nonzero(L > 0)[0]
    top_l = lpos[np.argsort(-L[lpos], kind="stable")][:cand]
    pool = sorted(set(top_d.tolist()) | set(top_l.tolist()))
    P = np.array(pool)
    dmin, dmax, lmax = D[P].min(), D[P].max(), L[P].max()
    members = set(pool)
    if nw > 0:
        for i in pool:
            for j in (sp.prev[i], sp.next[i]):
                if j is not None:
                    members.add(j)
    M = np.array(sorted(members))
    dn = np.clip((D[M] - dmin) / (dmax - dmin), 0, None) if dmax > dmin else 0 * D[M]
    ln = L[M] / lmax if lmax > 0 else 0 * L[M]
    base = dict(zip(M.tolist(), (w * ln + (1 - w) * dn).tolist()))
    score = {}
    for i, b in base.items():
        best = 0.0
        if nw > 0:
            for j in (sp.prev[i], sp.next[i]):
                if j is None or j not in base:
                    continue
                if ratio > 0 and sp.words[i] > ratio * sp.words[j]:
                    continue
                if own_cap and sp.words[i] > own_cap:
                    continue
                best = max(best, base[j])
        score[i] = b + nw * best
    if sess > 0:
        top = defaultdict(float)
        for i, b in base.items():
            top[sp.session[i]] = max(top[sp.session[i]], b)
        for i in score:
            score[i] += sess * top[sp.session[i]]
    order = sorted(score, key=lambda i: (-score[i], i))
    if diversity > 0:
        # Greedy: each turn already taken from a session costs the next one `diversity`.
        head, rest, taken = [], order[:depth], defaultdict(int)
        while rest:
            best = max(rest, key=lambda i: (score[i] - diversity * taken[sp.session[i]], -i))
            rest.remove(best)
            head.append(best)
            taken[sp.session[best]] += 1
        order = head + order[depth:]
    return order


def metrics_locomo(qs, ranks):
    by = defaultdict(list)
    for q, r in zip(qs, ranks):
        ev = set(q["ev"])
        row = [len(ev & set(r[:k])) / len(ev) for k in (1, 5, 10, 20)]
        by["all"].append(row)
        by[q["cat"]].append(row)
    return {c: np.mean(v, axis=0) for c, v in by.items()}


def metrics_lme(qs, ranks):
    by = defaultdict(list)
    for q, r in zip(qs, ranks):
        ev = set(q["ev"])
        sessions = []
        for i in r:
            s = q["sp"].session[i]
            if s not in sessions:
                sessions.append(s)
        s5 = float(any(s in q["sessions"] for s in sessions[:5]))
        t5 = float(ev <= set(r[:5])) if ev else np.nan
        t10 = float(ev <= set(r[:10])) if ev else np.nan
        row = [t5, t10, s5]
        by["all"].append(row)
        by[q["cat"]].append(row)
    return {c: np.nanmean(np.array(v, float), axis=0) for c, v in by.items()}


def fmt(m):
    return " ".join(f"{x:.3f}" for x in m)


FAMILIES = {
    "length ratio": [dict(ratio=r) for r in (0, 2, 3, 4, 6)],
    "session boost": [dict(sess=g) for g in (0, 0.1, 0.2, 0.3, 0.5)],
    "session boost wide": [dict(sess=g) for g in (0.5, 0.7, 1.0, 1.5)],
    "session boost x nw": [dict(sess=g, nw=n) for g in (0.3, 0.5, 0.7) for n in (0.3, 0.45, 0.6, 0.8)],
    "session boost x w": [dict(sess=g, w=w) for g in (0.5, 0.7) for w in (0.4, 0.5, 0.6)],
    "session boost x ratio": [dict(sess=g, ratio=r) for g in (0.3, 0.5, 0.7) for r in (0, 4, 6)],
    "own cap": [dict(own_cap=n) for n in (0, 50, 75, 100, 150, 200)],
    "own cap x session": [dict(own_cap=n, sess=g) for n in (0, 75, 100, 150) for g in (0.3, 0.5, 0.7, 1.0)],
    "session diversity": [dict(diversity=d) for d in (0, 0.05, 0.1, 0.2, 0.3)],
    "diversity x ratio": [dict(diversity=d, ratio=r) for d in (0, 0.1, 0.2) for r in (0, 4)],
}


def both(loc, lme, kw):
    a = metrics_locomo(loc, [rank(q, **kw) for q in loc])
    b = metrics_lme(lme, [rank(q, **kw) for q in lme])
    return a, b


def main(locomo_path, lme_path, *families):
    loc, lme = load(locomo_path), load(lme_path)
    for name, kw in [("dense", dict(w=0.0, nw=0.0)), ("lexical", dict(w=1.0, nw=0.0)), ("hybrid", {})]:
        a, b = both(loc, lme, kw)
        print(f"{name:8} LoCoMo R@1/5/10/20 {fmt(a['all'])}   LME t5/t10/s5 {fmt(b['all'])}")
        for c in sorted(b):
            print(f"   LME {c:28} {fmt(b[c])}")
    for fam in families or FAMILIES:
        print(f"== {fam}")
        rows = []
        for kw in FAMILIES[fam]:
            a, b = both(loc, lme, kw)
            rows.append((kw, a, b))
            print(f"  {kw}: LoCoMo {fmt(a['all'])}  LME {fmt(b['all'])}")
        on_loc = max(rows, key=lambda r: (r[1]["all"][1] + r[1]["all"][2]))
        on_lme = max(rows, key=lambda r: (r[2]["all"][0] + r[2]["all"][1]))
        print(f"  chosen on LoCoMo {on_loc[0]} -> LME {fmt(on_loc[2]['all'])}")
        print(f"  chosen on LME {on_lme[0]} -> LoCoMo {fmt(on_lme[1]['all'])}")


if __name__ == "__main__":
    main(*sys.argv[1:])
