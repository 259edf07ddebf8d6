-- bench/catalog/fts.sql - PostgreSQL's own full-text search over the seeded
-- catalog, for `./estore bench catalog` only (schema `bench`, never in the
-- service's migrations): the baseline the search engine is compared with.
--
-- bench.fts holds the products the engine indexes (active, in an active
-- store) with a weighted tsvector (title A, attribute values B,
-- description C, the 'simple' configuration: lower-cased words, no
-- stemming, like the engine's tokenizer), a GIN index on it, and a pg_trgm
-- GIN index on the title. It carries the columns the
-- filters and facets need, so PostgreSQL reads no wider row than it must;
-- a page of hits is joined back to catalog.products for the full rows.
-- bench.title_words and bench.lexicon are ts_stat's word counts (titles
-- only, and every field), from which the bench picks its queries; a
-- misspelt word is corrected against bench.lexicon through its pg_trgm
-- index, the pg_trgm documentation's way with full-text search (a
-- trigram match of the word against whole titles, 'word' <% title, finds
-- a few hundred of the tens of thousands of products the corrected word
-- does, and is slower).

\set ON_ERROR_STOP on
SET maintenance_work_mem = '1GB';
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS pg_prewarm;
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;

CREATE TABLE bench.fts AS
SELECT p.id, p.store_id, p.category_id, p.price_minor, p.stock, p.title,
       setweight(to_tsvector('simple', p.title), 'A') ||
       setweight(to_tsvector('simple', coalesce(
           (SELECT string_agg(e.value, ' ' ORDER BY e.key)
            FROM jsonb_each_text(p.attributes) e), '')), 'B') ||
       setweight(to_tsvector('simple', p.description), 'C') AS tsv
FROM catalog.products p
JOIN catalog.stores s ON s.id = p.store_id
WHERE p.status = 'active' AND s.status = 'active';

ALTER TABLE bench.fts ADD PRIMARY KEY (id);
CREATE INDEX fts_tsv_idx ON bench.fts USING gin (tsv);
CREATE INDEX fts_title_trgm_idx ON bench.fts USING gin (title gin_trgm_ops);
VACUUM ANALYZE bench.fts;
VACUUM ANALYZE catalog.products;

CREATE TABLE bench.title_words AS
SELECT word, ndoc FROM ts_stat('SELECT tsv FROM bench.fts', 'a');
CREATE TABLE bench.lexicon AS
SELECT word, ndoc FROM ts_stat('SELECT tsv FROM bench.fts');
ALTER TABLE bench.lexicon ADD PRIMARY KEY (word);
CREATE INDEX lexicon_trgm_idx ON bench.lexicon USING gin (word gin_trgm_ops);
ANALYZE bench.title_words;
ANALYZE bench.lexicon;
