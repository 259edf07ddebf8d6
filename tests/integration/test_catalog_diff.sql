-- What SearchProducts must answer, computed by brute force in SQL over the
-- catalog's own rows: test_catalog_diff.py loads this file once, fills
-- searchdiff.queries / qstores / qattrs with its random queries, and reads
-- back searchdiff.answers(), one JSON object per query.
--
-- The rules restated here are the engine's (services/catalog/search:
-- README.md, tokenize.c, query.c, lexicon.c, facets.c) with the values of
-- es_config_default, and the service's (services/catalog/service.c): one
-- category, OR of stores, a price bound of 0 is no bound, attribute
-- "key:value" filters, facets with its fixed price bounds. Ranking aside:
-- only match sets, totals, facet counts and corrections are compared.

CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
DROP SCHEMA IF EXISTS searchdiff CASCADE;
CREATE SCHEMA searchdiff;

-- ---- the tokenizer ---------------------------------------------------------
-- ASCII letters lowercased (only those: "CRÈME" reads "crÈme"); words split
-- on every ASCII character that is not a letter or digit, every other
-- character belongs to a word; a word is cut to 64 bytes at a character
-- boundary.

CREATE FUNCTION searchdiff.cut64(w text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN octet_length(w) <= 64 THEN w ELSE
        (SELECT left(w, n) FROM generate_series(64, 1, -1) n
         WHERE octet_length(left(w, n)) <= 64 LIMIT 1) END
$$;

CREATE FUNCTION searchdiff.words(t text) RETURNS TABLE (pos bigint, word text)
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT n, searchdiff.cut64(translate(m[1], 'ABCDEFGHIJKLMNOPQRSTUVWXYZ',
                                               'abcdefghijklmnopqrstuvwxyz'))
    FROM regexp_matches(t, '([0-9A-Za-z\u0080-\U0010FFFF]+)', 'g')
         WITH ORDINALITY AS x(m, n)
$$;

-- ---- typo distance -----------------------------------------------------------
-- Optimal string alignment distance over bytes (the engine compares bytes,
-- so "é" for "e" is two edits): the textbook full matrix, d[i][j] stored
-- row-major at d[i * (m + 1) + j + 1].

CREATE FUNCTION searchdiff.osa(a bytea, b bytea) RETURNS int
LANGUAGE plpgsql IMMUTABLE STRICT COST 10000 AS $$
DECLARE
    n int := length(a);
    m int := length(b);
    w int := length(b) + 1;
    d int[] := array_fill(0, ARRAY[(length(a) + 1) * (length(b) + 1)]);
    v int;
BEGIN
    FOR i IN 0..n LOOP d[i * w + 1] := i; END LOOP;
    FOR j IN 0..m LOOP d[j + 1] := j; END LOOP;
    FOR i IN 1..n LOOP
        FOR j IN 1..m LOOP
            v := least(d[(i - 1) * w + j + 1] + 1,      -- a[i] deleted
                       d[i * w + j] + 1,                -- b[j] inserted
                       d[(i - 1) * w + j]               -- kept or substituted
                           + (get_byte(a, i - 1) <> get_byte(b, j - 1))::int);
            IF i > 1 AND j > 1 AND get_byte(a, i - 1) = get_byte(b, j - 2)
               AND get_byte(a, i - 2) = get_byte(b, j - 1) THEN
                v := least(v, d[(i - 2) * w + j - 1] + 1);  -- adjacent swap
            END IF;
            d[i * w + j + 1] := v;
        END LOOP;
    END LOOP;
    RETURN d[n * w + m + 1];
END
$$;

-- Bytes as one character each (Latin-1 maps every byte to a character), so
-- fuzzystrmatch's Levenshtein counts byte edits. It serves only to skip
-- hopeless pairs before the slow exact distance: each OSA edit is at most
-- two Levenshtein edits (a swap is a delete and an insert), so
-- OSA <= d implies Levenshtein <= 2d.
CREATE FUNCTION searchdiff.bytes(w text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT convert_from(convert_to(w, 'UTF8'), 'LATIN1')
$$;

-- ---- input: the queries as sent --------------------------------------------

CREATE TABLE searchdiff.queries (
    qid       int PRIMARY KEY,
    q         text NOT NULL,
    category  uuid,                 -- NULL: no category filter
    min_price bigint NOT NULL,      -- 0: no bound (as in the request)
    max_price bigint NOT NULL,
    in_stock  bool NOT NULL
);
CREATE TABLE searchdiff.qstores (qid int NOT NULL, store uuid NOT NULL);
CREATE TABLE searchdiff.qattrs (qid int NOT NULL, key text NOT NULL, value text NOT NULL);

-- ---- the answers ------------------------------------------------------------
-- Set-based over all queries at once (one query at a time would cost a
-- round of planning and a scan of every product per query); each step is
-- a table of its own so that it can be read on its own when debugging.

CREATE FUNCTION searchdiff.answers(page_all_up_to int) RETURNS SETOF json
LANGUAGE plpgsql AS $$
DECLARE
    -- es_config_default
    prefix_min_len   CONSTANT int := 2;
    max_prefix_terms CONSTANT int := 64;
    max_corrections  CONSTANT int := 3;
    facet_values     CONSTANT int := 10;
    -- service.c: price facet bounds
    bounds CONSTANT bigint[] := '{0,1000,2500,5000,10000,25000,50000,100000}';
BEGIN
    -- Hash tables of a few million rows: in memory, not in temp files.
    SET LOCAL work_mem = '256MB';
    SET LOCAL jit = off;

    -- Searchable: active products of active stores, numbered (n) so that
    -- the big intermediate tables below carry an int rather than a uuid.
    CREATE TEMP TABLE doc ON COMMIT DROP AS
        SELECT row_number() OVER (ORDER BY p.id)::int AS n, p.id, p.store_id,
               p.category_id, p.price_minor AS price, p.stock, p.attributes,
               p.title, p.description
        FROM catalog.products p JOIN catalog.stores s ON s.id = p.store_id
        WHERE p.status = 'active' AND s.status = 'active';
    -- Words of the title, every attribute value and the description.
    CREATE TEMP TABLE doc_word ON COMMIT DROP AS
        SELECT DISTINCT d.n, w.word
        FROM doc d,
             LATERAL (SELECT d.title AS t UNION ALL SELECT d.description
                      UNION ALL SELECT value FROM jsonb_each_text(d.attributes)) f,
             LATERAL searchdiff.words(f.t) w;
    CREATE INDEX ON doc_word (word);
    -- The lexicon: words of searchable products, with their document count.
    CREATE TEMP TABLE lex ON COMMIT DROP AS
        SELECT word, count(*) AS df, octet_length(word) AS len,
               searchdiff.bytes(word) AS b
        FROM doc_word GROUP BY word;
    -- A product's category and every ancestor of it.
    CREATE TEMP TABLE doc_cat ON COMMIT DROP AS
        WITH RECURSIVE up(n, cat) AS (
            SELECT n, category_id FROM doc WHERE category_id IS NOT NULL
            UNION
            SELECT up.n, c.parent_id FROM up JOIN catalog.categories c ON c.id = up.cat
            WHERE c.parent_id IS NOT NULL)
        SELECT n, cat FROM up;
    CREATE TEMP TABLE doc_attr ON COMMIT DROP AS
        SELECT d.n, e.key, e.value FROM doc d, jsonb_each_text(d.attributes) e;
    ANALYZE doc; ANALYZE doc_word; ANALYZE lex; ANALYZE doc_cat; ANALYZE doc_attr;

    -- The queries with their filters in one row: stores, and per attribute
    -- key the values asked.
    CREATE TEMP TABLE qry ON COMMIT DROP AS
        SELECT q.*,
               ARRAY(SELECT store FROM searchdiff.qstores s WHERE s.qid = q.qid) AS stores,
               (SELECT jsonb_object_agg(key, vals) FROM
                   (SELECT key, jsonb_agg(value) AS vals FROM searchdiff.qattrs a
                    WHERE a.qid = q.qid GROUP BY key) x) AS attrs
        FROM searchdiff.queries q;
    -- Query words (at most 16; only the last one expands as a prefix).
    CREATE TEMP TABLE qword ON COMMIT DROP AS
        SELECT q.qid, w.pos, w.word, octet_length(w.word) AS len,
               w.pos = max(w.pos) OVER (PARTITION BY q.qid) AS last
        FROM searchdiff.queries q, searchdiff.words(q.q) w WHERE w.pos <= 16;
    ANALYZE qry; ANALYZE qword;

    -- Each word's variants: the word itself if some product has it ...
    CREATE TEMP TABLE variant (qid int, pos bigint, term text, how text) ON COMMIT DROP;
    INSERT INTO variant
        SELECT w.qid, w.pos, l.word, 'exact' FROM qword w JOIN lex l ON l.word = w.word;
    -- ... the last word, from 2 bytes on, as a prefix of other words: at
    -- most 64 of them, the most frequent first, then byte order ...
    INSERT INTO variant
        SELECT qid, pos, word, 'prefix' FROM (
            SELECT w.qid, w.pos, l.word,
                   row_number() OVER (PARTITION BY w.qid, w.pos
                                      ORDER BY l.df DESC, l.word COLLATE "C") AS rank
            FROM qword w JOIN lex l
              ON starts_with(l.word, w.word) AND l.word <> w.word
            WHERE w.last AND w.len >= prefix_min_len) x
        WHERE rank <= max_prefix_terms;
    -- ... and when that found nothing: the words of 4+ bytes within OSA
    -- distance 1 (query word of 4-7 bytes) or 2 (8+), only those at the
    -- smallest distance found, the most frequent first, then byte order,
    -- at most 3.
    CREATE TEMP TABLE correction ON COMMIT DROP AS
        WITH todo AS (
            SELECT w.*, CASE WHEN w.len >= 8 THEN 2 WHEN w.len >= 4 THEN 1 ELSE 0 END AS maxd,
                   searchdiff.bytes(w.word) AS b
            FROM qword w
            WHERE NOT EXISTS (SELECT 1 FROM variant v WHERE v.qid = w.qid AND v.pos = w.pos)),
        -- Levenshtein first: far cheaper, and OSA <= d needs it <= 2d.
        close AS MATERIALIZED (
            SELECT t.qid, t.pos, t.word AS qw, t.maxd, l.word, l.df
            FROM todo t JOIN lex l
              ON l.len >= 4 AND abs(l.len - t.len) <= t.maxd AND l.word <> t.word
            WHERE t.maxd > 0
              AND levenshtein_less_equal(t.b, l.b, 2 * t.maxd)
                  <= 2 * t.maxd),
        dist AS (
            SELECT c.*, searchdiff.osa(convert_to(c.qw, 'UTF8'), convert_to(c.word, 'UTF8')) AS d
            FROM close c),
        near AS (
            SELECT *, min(d) OVER (PARTITION BY qid, pos) AS best FROM dist WHERE d <= maxd)
        SELECT qid, pos, word,
               row_number() OVER (PARTITION BY qid, pos
                                  ORDER BY df DESC, word COLLATE "C") AS rank
        FROM near WHERE d = best;
    DELETE FROM correction WHERE rank > max_corrections;
    INSERT INTO variant SELECT qid, pos, word, 'typo' FROM correction;
    ANALYZE variant;

    -- Matches: every word matched by some variant. The candidates are the
    -- products of the word with the fewest postings; each is kept when
    -- every word of the query has a variant in it ...
    CREATE INDEX ON variant (qid, pos);
    CREATE INDEX ON doc_word (n, word);
    CREATE TEMP TABLE word_hit ON COMMIT DROP AS
        WITH size AS (
            SELECT v.qid, v.pos, sum(l.df) AS postings
            FROM variant v JOIN lex l ON l.word = v.term GROUP BY v.qid, v.pos),
        rarest AS (
            SELECT DISTINCT ON (qid) qid, pos FROM size ORDER BY qid, postings, pos),
        cand AS (
            SELECT DISTINCT r.qid, r.pos, dw.n
            FROM rarest r JOIN variant v ON v.qid = r.qid AND v.pos = r.pos
            JOIN doc_word dw ON dw.word = v.term)
        SELECT c.qid, c.n FROM cand c
        WHERE NOT EXISTS (
            SELECT 1 FROM qword w WHERE w.qid = c.qid AND w.pos <> c.pos
              AND NOT EXISTS (SELECT 1 FROM variant v JOIN doc_word dw
                                ON dw.word = v.term AND dw.n = c.n
                              WHERE v.qid = w.qid AND v.pos = w.pos));
    ANALYZE word_hit;
    -- ... (every product when there are no words), then every filter.
    CREATE TEMP TABLE hit ON COMMIT DROP AS
        WITH cand AS (
            SELECT qid, n FROM word_hit
            UNION ALL
            SELECT q.qid, d.n FROM qry q, doc d
            WHERE NOT EXISTS (SELECT 1 FROM qword w WHERE w.qid = q.qid))
        SELECT c.qid, d.n, d.store_id, d.price
        FROM cand c
        JOIN qry q ON q.qid = c.qid
        JOIN doc d ON d.n = c.n
        WHERE (q.category IS NULL
               OR EXISTS (SELECT 1 FROM doc_cat dc WHERE dc.n = d.n AND dc.cat = q.category))
          AND (cardinality(q.stores) = 0 OR d.store_id = ANY (q.stores))
          AND (q.min_price = 0 OR d.price >= q.min_price)
          AND (q.max_price = 0 OR d.price <= q.max_price)
          -- values of one key OR, keys AND
          AND (q.attrs IS NULL OR NOT EXISTS (
              SELECT 1 FROM jsonb_each(q.attrs) f(key, vals)
              WHERE NOT coalesce(f.vals ? (d.attributes ->> f.key), false)))
          AND (NOT q.in_stock OR d.stock > 0);
    ANALYZE hit;

    RETURN QUERY
    WITH total AS (SELECT qid, count(*) AS total FROM hit GROUP BY qid),
    ids AS (
        SELECT h.qid, json_agg(d.id ORDER BY d.id) AS ids
        FROM hit h JOIN total t ON t.qid = h.qid JOIN doc d ON d.n = h.n
        WHERE t.total <= page_all_up_to GROUP BY h.qid),
    -- Facets: count desc, then value in byte order.
    cats AS (
        SELECT qid, json_agg(json_build_array(cat, c) ORDER BY c DESC, cat::text COLLATE "C") AS f
        FROM (SELECT h.qid, dc.cat, count(*) AS c
              FROM hit h JOIN doc_cat dc ON dc.n = h.n GROUP BY h.qid, dc.cat) x
        GROUP BY qid),
    stores AS (
        SELECT qid, json_agg(json_build_array(store_id, c)
                             ORDER BY c DESC, store_id::text COLLATE "C") AS f
        FROM (SELECT qid, store_id, count(*) AS c FROM hit GROUP BY qid, store_id) x
        GROUP BY qid),
    -- [bound i, bound i+1), the last one open (0 on the wire); empty
    -- buckets are left out.
    prices AS (
        SELECT qid, json_agg(json_build_array(bounds[b], coalesce(bounds[b + 1], 0), c)
                             ORDER BY b) AS f
        FROM (SELECT qid, width_bucket(price, bounds) AS b, count(*) AS c
              FROM hit GROUP BY 1, 2) x
        WHERE b > 0 GROUP BY qid),
    -- Per key, the 10 values with the most matches.
    attr_counts AS (
        SELECT h.qid, a.key, a.value, count(*) AS c,
               row_number() OVER (PARTITION BY h.qid, a.key
                                  ORDER BY count(*) DESC, a.value COLLATE "C") AS rank
        FROM hit h JOIN doc_attr a ON a.n = h.n GROUP BY h.qid, a.key, a.value),
    attrs AS (
        SELECT qid, json_object_agg(key, f) AS f FROM (
            SELECT qid, key, json_agg(json_build_array(value, c) ORDER BY rank) AS f
            FROM attr_counts WHERE rank <= facet_values GROUP BY qid, key) x
        GROUP BY qid),
    words AS (
        SELECT qid, json_agg(word ORDER BY pos) AS f FROM qword GROUP BY qid),
    -- What the service reports: each corrected word and its first correction.
    corr AS (
        SELECT c.qid, json_agg(json_build_array(w.word, c.word) ORDER BY c.pos) AS f
        FROM correction c JOIN qword w ON w.qid = c.qid AND w.pos = c.pos
        WHERE c.rank = 1 GROUP BY c.qid)
    SELECT json_build_object(
        'qid', q.qid, 'total', coalesce(t.total, 0), 'ids', i.ids,
        'categories', coalesce(c.f, '[]'), 'stores', coalesce(s.f, '[]'),
        'prices', coalesce(p.f, '[]'), 'attributes', coalesce(a.f, '{}'),
        'words', coalesce(w.f, '[]'), 'corrections', coalesce(r.f, '[]'))
    FROM searchdiff.queries q
    LEFT JOIN total t ON t.qid = q.qid
    LEFT JOIN ids i ON i.qid = q.qid
    LEFT JOIN cats c ON c.qid = q.qid
    LEFT JOIN stores s ON s.qid = q.qid
    LEFT JOIN prices p ON p.qid = q.qid
    LEFT JOIN attrs a ON a.qid = q.qid
    LEFT JOIN words w ON w.qid = q.qid
    LEFT JOIN corr r ON r.qid = q.qid
    ORDER BY q.qid;
END
$$;
