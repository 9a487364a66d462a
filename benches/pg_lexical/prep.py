"""LoCoMo turns and questions as CSV for run.sql: python3 prep.py ../shared/data/locomo/locomo10.json
(writes turns.csv and questions.csv here; evidence normalized as src/locomo.rs does)."""
import csv, json, re, sys
d = json.load(open(sys.argv[1]))
turns = csv.writer(open('turns.csv','w', newline=''))
qs = csv.writer(open('questions.csv','w', newline=''))
qid = 0
for c in d:
    conv = c['sample_id']
    ids = set()
    cv = c['conversation']
    s = 1
    while f'session_{s}' in cv:
        for t in cv[f'session_{s}']:
            m = re.match(r'D:?(\d+):(\d+)', t['dia_id'])
            dia = f'D{int(m.group(1))}:{int(m.group(2))}'
            text = t['text']
            if t.get('blip_caption'):
                text += f" [shares {t['blip_caption']}]"
            body = f"{t['speaker']}: {text}"
            turns.writerow([conv, dia, body])
            ids.add(dia)
        s += 1
    for q in c['qa']:
        ev = []
        for e in re.split(r'[;, ]', ' '.join(q.get('evidence', []))):
            m = re.match(r'D:?(\d+):(\d+)$', e.strip())
            if m:
                x = f'D{int(m.group(1))}:{int(m.group(2))}'
                if x in ids and x not in ev: ev.append(x)
        if ev:
            qid += 1
            qs.writerow([qid, conv, q['question'], '{' + ','.join('"%s"' % x for x in ev) + '}', q['category']])
print(qid)
