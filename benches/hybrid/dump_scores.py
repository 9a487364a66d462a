"""Dumps both channels' raw scores for every question of LoCoMo and LongMemEval, asked
through a running memoryd server, so fusion rules can be compared offline
(`benches/hybrid/fusion.py`) on exactly the engine's own cosines and BM25 scores.

    memoryd --data-dir D eval locomo ../shared/data/locomo/locomo10.json          # ingest once
    memoryd --data-dir D eval longmemeval ../shared/data/longmemeval-dev/….json.gz
    memoryd --data-dir D --no-background-summarize serve --bind 127.0.0.1:7171 &
    python3 benches/hybrid/dump_scores.py http://127.0.0.1:7171 locomo ../shared/data/locomo/locomo10.json out-locomo.json
    python3 benches/hybrid/dump_scores.py http://127.0.0.1:7171 lme ../shared/data/longmemeval-dev/longmemeval_s.dev40.json.gz out-lme.json

Per question: every turn of its namespace with its cosine (dense mode, k = 1000: every
turn of a namespace under 1,000 turns) and every turn matching a query term with its
BM25 score (lexical mode, the server's BM25 parameters). Per turn: session, role, word
count, in insertion order.
Standard library only.
"""

import gzip
import json
import re
import sys
import urllib.request


def post(base, ns, body):
    req = urllib.request.Request(
        f"{base}/v1/namespaces/{ns}/search",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def norm_id(raw):
    m = re.fullmatch(r"D:?(\d+):(\d+)", raw.strip())
    return f"D{int(m.group(1))}:{int(m.group(2))}" if m else None


def locomo_questions(path):
    out = []
    for s in json.load(open(path)):
        conv = s["conversation"]
        ids = {norm_id(t["dia_id"]) for k in conv if re.fullmatch(r"session_\d+", k) for t in conv[k]}
        for q in s["qa"]:
            ev = [i for raw in q.get("evidence", []) for p in re.split(r"[;, ]", raw) if (i := norm_id(p)) in ids]
            if ev:
                out.append(dict(ns=f"locomo-{s['sample_id']}", q=q["question"], cat=str(q["category"]),
                                ev=list(dict.fromkeys(ev))))
    return out


def lme_questions(path):
    out = []
    for i, q in enumerate(json.load(gzip.open(path))):
        if q["question_id"].endswith("_abs"):
            continue
        ev = [f"{s}:{t}" for s, turns in enumerate(q["haystack_sessions"]) for t, x in enumerate(turns)
              if x.get("has_answer") and x["role"] == "user"]
        out.append(dict(ns=f"lme-{i}", q=q["question"], cat=q["question_type"], ev=ev,
                        sessions=q["answer_session_ids"]))
    return out


def turn_id(kind, m):
    md = m.get("metadata", {})
    return norm_id(md["dia_id"]) if kind == "locomo" else md["turn"]


def main(base, kind, path, out_path):
    questions = locomo_questions(path) if kind == "locomo" else lme_questions(path)
    namespaces = {}
    for n, q in enumerate(questions):
        def ask(mode):
            body = {"query": q["q"], "k": 1000, "mode": mode, "kinds": ["message"]}
            return post(base, q["ns"], body)["hits"]

        dense = ask("dense")
        if q["ns"] not in namespaces:
            turns = []
            for h in dense:
                m = h["message"]
                turns.append(dict(id=turn_id(kind, m), session=m.get("session_id"),
                                  role=m["role"], words=len(m["content"].split())))
            # Insertion order: LoCoMo D<session>:<turn>, LongMemEval <session>:<turn>.
            turns.sort(key=lambda t: tuple(int(x) for x in t["id"].lstrip("D").split(":")))
            namespaces[q["ns"]] = turns
        q["dense"] = {turn_id(kind, h["message"]): h["score"] for h in dense}
        q["lex"] = {turn_id(kind, h["message"]): h["score"] for h in ask("lexical")}
        if n % 200 == 0:
            print(f"{n}/{len(questions)}", file=sys.stderr)
    json.dump(dict(namespaces=namespaces, questions=questions), open(out_path, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:])
