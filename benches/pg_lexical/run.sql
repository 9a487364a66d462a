-- PostgreSQL full text as memoryd's lexical channel, measured on LoCoMo (README,
-- Scaling out): psql "$URL" -f run.sql in a fresh database, after prep.py.
CREATE TABLE turns (conv text, dia text, body text, tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED);
CREATE TABLE qs (id int, conv text, q text, ev text[], cat int);
\copy turns (conv, dia, body) FROM 'turns.csv' CSV
\copy qs FROM 'questions.csv' CSV
CREATE INDEX ON turns USING gin (tsv);
CREATE FUNCTION r_at(ranked text[], ev text[], k int) RETURNS float8 LANGUAGE sql IMMUTABLE AS
$$ SELECT count(*)::float8 / cardinality(ev) FROM unnest(ev) e WHERE e = ANY(ranked[1:k]) $$;
-- OR query of the question's stemmed terms
CREATE FUNCTION orq(q text) RETURNS tsquery LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN plainto_tsquery('english', q)::text = '' THEN plainto_tsquery('english', q)
          ELSE to_tsquery('english', replace(plainto_tsquery('english', q)::text, ' & ', ' | ')) END $$;
\echo variant R@5 R@10
SELECT 'websearch AND, ts_rank' v, round(avg(r_at(r, ev, 5))::numeric, 3), round(avg(r_at(r, ev, 10))::numeric, 3) FROM qs,
 LATERAL (SELECT array_agg(dia ORDER BY s DESC) r FROM (SELECT dia, ts_rank(tsv, websearch_to_tsquery('english', q)) s FROM turns t WHERE t.conv = qs.conv AND tsv @@ websearch_to_tsquery('english', q) ORDER BY s DESC LIMIT 10) x) y;
SELECT 'OR, ts_rank' v, round(avg(r_at(coalesce(r,'{}'), ev, 5))::numeric, 3), round(avg(r_at(coalesce(r,'{}'), ev, 10))::numeric, 3) FROM qs,
 LATERAL (SELECT array_agg(dia ORDER BY s DESC) r FROM (SELECT dia, ts_rank(tsv, orq(q)) s FROM turns t WHERE t.conv = qs.conv AND tsv @@ orq(q) ORDER BY s DESC LIMIT 10) x) y;
SELECT 'OR, ts_rank norm 1 (log length)' v, round(avg(r_at(coalesce(r,'{}'), ev, 5))::numeric, 3), round(avg(r_at(coalesce(r,'{}'), ev, 10))::numeric, 3) FROM qs,
 LATERAL (SELECT array_agg(dia ORDER BY s DESC) r FROM (SELECT dia, ts_rank(tsv, orq(q), 1) s FROM turns t WHERE t.conv = qs.conv AND tsv @@ orq(q) ORDER BY s DESC LIMIT 10) x) y;
SELECT 'OR, ts_rank_cd' v, round(avg(r_at(coalesce(r,'{}'), ev, 5))::numeric, 3), round(avg(r_at(coalesce(r,'{}'), ev, 10))::numeric, 3) FROM qs,
 LATERAL (SELECT array_agg(dia ORDER BY s DESC) r FROM (SELECT dia, ts_rank_cd(tsv, orq(q)) s FROM turns t WHERE t.conv = qs.conv AND tsv @@ orq(q) ORDER BY s DESC LIMIT 10) x) y;
