"""pick.py OUT_DIR [--queries N] [--reads N]: the queries of `./estore bench
catalog`, picked from the seeded data (bench/catalog/fts.sql must have run),
never hard-coded, so they fit whatever vocabulary the seeder writes.

PostgreSQL is reached with psql and the PG* environment variables. For
each query type T it writes, in OUT_DIR:

  T.tsv        one query a line for catalog_bench (q, category, min_price,
               max_price, in_stock, sort, page_size)
  T.paths      the same queries as edge request paths, for wrk
  pg/T-NN.sql  the equivalent PostgreSQL query, one file each, for pgbench
  T.count.sql  a count(*) of the first query's matches in PostgreSQL
and reads.paths (GET /v1/products/{id} of N searchable products) and
queries.txt (what was picked, for people).

Types (the order they are measured in):
  common    the most frequent title words, alone, ranked top-20
  word      one mid-frequency word (in 0.1-1 % of the products)
  two       two words from one real title, both required
  typo      a frequent word with one edit (deleted, swapped, replaced or
            inserted letter) that is no word of the catalog nor a prefix of
            one; PostgreSQL corrects it with pg_trgm against the catalog's
            words (bench.lexicon), then searches as for a word
  prefix    the first four letters of a frequent word
  filtered  a word in the category subtree (depth 2) where it is most found,
            within the middle half of its prices, in stock only
  facets    a common word, in stock, above a price floor: 32 floors per
            word, so a query repeats only after more distinct queries than
            the engine's facet cache keeps (64); PostgreSQL counts
            categories, stores and price buckets with GROUPING SETS
"""
import argparse
import os
import re
import subprocess
import sys
import urllib.parse

PSQL = "/usr/lib/postgresql/15/bin/psql"
PAGE = 20
WORD = re.compile(r"^[a-z]{3,}$")
# The engine's price facet bounds (services/catalog/service.c), minor units.
PRICE_BOUNDS = "{0,1000,2500,5000,10000,25000,50000,100000}"
TYPES = ["common", "word", "two", "typo", "prefix", "filtered", "facets"]


def sql(query):
    out = subprocess.run(
        [PSQL, "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", query],
        check=True, stdout=subprocess.PIPE, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line != ""]


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def tsq(words, prefix=False):
    """to_tsquery('simple', ...) of words ANDed; the last as a prefix."""
    parts = list(words)
    if prefix:
        parts[-1] += ":*"
    return "to_tsquery('simple', %s)" % lit(" & ".join(parts))


def engine_words(text):
    """The engine's tokenizer (search/tokenize.c) for ASCII text."""
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


class Query:
    def __init__(self, kind, q, category="", subtree=(), min_price=0,
                 max_price=0, in_stock=False, prefix=False):
        self.kind, self.q, self.category = kind, q, category
        self.subtree = list(subtree)
        self.min_price, self.max_price = min_price, max_price
        self.in_stock, self.prefix = in_stock, prefix

    def tsv(self):
        return "\t".join([self.q, self.category, str(self.min_price or ""),
                          str(self.max_price or ""),
                          "1" if self.in_stock else "", "", str(PAGE)])

    def path(self):
        p = [("q", self.q)]
        if self.category:
            p.append(("category", self.category))
        if self.min_price:
            p.append(("minPrice", str(self.min_price)))
        if self.max_price:
            p.append(("maxPrice", str(self.max_price)))
        if self.in_stock:
            p.append(("inStock", "true"))
        p.append(("pageSize", str(PAGE)))
        return "/v1/products:search?" + urllib.parse.urlencode(
            p, quote_via=urllib.parse.quote)

    def tsquery(self):
        if self.kind == "typo":
            # PostgreSQL's way (the pg_trgm documentation's, with FTS): the
            # catalog word most similar by trigrams, the most frequent
            # among equals, then an ordinary search for it; an InitPlan
            # run once a query.
            return ("(SELECT to_tsquery('simple', word) FROM bench.lexicon "
                    "WHERE word %% %s ORDER BY similarity(word, %s) DESC, ndoc DESC, "
                    "word LIMIT 1)" % (lit(self.q), lit(self.q)))
        return tsq(engine_words(self.q), self.prefix)

    def where(self):
        w = ["tsv @@ " + self.tsquery()]
        if self.subtree:
            w.append("category_id = ANY('{%s}'::uuid[])" % ",".join(self.subtree))
        if self.min_price:
            w.append("price_minor >= %d" % self.min_price)
        if self.max_price:
            w.append("price_minor <= %d" % self.max_price)
        if self.in_stock:
            w.append("stock > 0")
        return " AND ".join(w)

    def pg(self):
        if self.kind == "facets":
            return ("SELECT category_id, store_id, width_bucket(price_minor, "
                    "'%s'::bigint[]) AS price_bucket, count(*) FROM bench.fts "
                    "WHERE %s GROUP BY GROUPING SETS ((category_id), (store_id), "
                    "(width_bucket(price_minor, '%s'::bigint[])));"
                    % (PRICE_BOUNDS, self.where(), PRICE_BOUNDS))
        rank = "ts_rank(tsv, %s)" % self.tsquery()
        return ("SELECT p.id, p.store_id, p.title, p.description, p.category_id, "
                "p.price_minor, p.currency, p.attributes, p.image_urls, p.stock, "
                "p.rating_average, p.rating_count FROM (SELECT id, %s AS rank "
                "FROM bench.fts WHERE %s ORDER BY rank DESC LIMIT %d) t "
                "JOIN catalog.products p USING (id) ORDER BY t.rank DESC;"
                % (rank, self.where(), PAGE))

    def count_sql(self):
        return "SELECT count(*) FROM bench.fts WHERE %s;" % self.where()

    def describe(self):
        d = "q=%r" % self.q
        if self.category:
            d += " category=%s (%d categories)" % (self.category, len(self.subtree))
        if self.min_price or self.max_price:
            d += " price=%s..%s" % (self.min_price or "", self.max_price or "")
        if self.in_stock:
            d += " in_stock"
        return d


def edits(word, j):
    """One edit of word, away from both ends (an edit at the end could
    leave a prefix of the word, which the engine matches as one)."""
    m = len(word) // 2
    kind = j % 4
    if kind == 0:
        return word[:m] + word[m + 1:]
    if kind == 1:
        return word[:m - 1] + word[m] + word[m - 1] + word[m + 1:]
    if kind == 2:
        c = "a" if word[m] == "z" else chr(ord(word[m]) + 1)
        return word[:m] + c + word[m + 1:]
    return word[:m] + "e" + word[m:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--queries", type=int, default=8)
    ap.add_argument("--reads", type=int, default=10000)
    a = ap.parse_args()
    n_q = a.queries
    os.makedirs(os.path.join(a.out, "pg"), exist_ok=True)

    total = int(sql("SELECT count(*) FROM bench.fts")[0][0])
    if total == 0:
        sys.exit("pick.py: bench.fts is empty")
    tw = [(w, int(n)) for w, n in sql(
        "SELECT word, ndoc FROM bench.title_words ORDER BY ndoc DESC, word LIMIT 5000")
        if WORD.match(w)]
    if len(tw) < 3 * n_q:
        sys.exit("pick.py: only %d title words; the catalog is too small" % len(tw))

    q = {t: [] for t in TYPES}
    common = [w for w, _ in tw[:4]]
    q["common"] = [Query("common", w) for w in common]

    lo, hi = total / 1000, total / 100
    mid = [w for w, n in tw if lo <= n <= hi]
    if len(mid) < n_q:
        # A small catalog or a flat vocabulary: the ranks after the top few.
        mid = [w for w, _ in tw[4:]]
    step = max(1, len(mid) // n_q)
    q["word"] = [Query("word", w) for w in mid[::step][:n_q]]

    pairs = []
    for (title,) in sql("SELECT title FROM bench.fts ORDER BY md5(title) LIMIT 2000"):
        ws = []
        for w in engine_words(title):
            if WORD.match(w) and w not in ws:
                ws.append(w)
        if len(ws) >= 2 and (ws[0], ws[1]) not in pairs:
            pairs.append((ws[0], ws[1]))
        if len(pairs) == n_q:
            break
    q["two"] = [Query("two", "%s %s" % p) for p in pairs]

    long_words = [w for w, _ in tw if len(w) >= 6][:400]
    cands = []
    for j, w in enumerate(long_words):
        t = edits(w, j)
        if WORD.match(t) and t not in cands:
            cands.append(t)
    # No candidate may be a word of the catalog, nor the start of one.
    taken = {r[0] for r in sql(
        "SELECT c FROM unnest(ARRAY[%s]) c WHERE EXISTS (SELECT 1 FROM "
        "bench.lexicon WHERE starts_with(word, c))" % ",".join(map(lit, cands)))}
    q["typo"] = [Query("typo", t) for t in cands if t not in taken][:n_q]

    prefixes = []
    for w, _ in tw:
        if len(w) >= 6 and w[:4] not in prefixes:
            prefixes.append(w[:4])
        if len(prefixes) == n_q:
            break
    q["prefix"] = [Query("prefix", p, prefix=True) for p in prefixes]

    cats = sql("SELECT id, coalesce(parent_id::text, '') FROM catalog.categories")
    parent = {c: p for c, p in cats}
    children = {}
    for c, p in cats:
        children.setdefault(p, []).append(c)

    def path(c):
        out = []
        while c:
            out.append(c)
            c = parent.get(c, "")
        return out[::-1]

    def subtree(c):
        out, todo = [], [c]
        while todo:
            x = todo.pop()
            out.append(x)
            todo.extend(children.get(x, []))
        return sorted(out)

    for w in common[:n_q // 2] + [x.q for x in q["word"]][:n_q - min(len(common), n_q // 2)]:
        where = "tsv @@ " + tsq([w])
        by_cat = {}
        for c, n in sql("SELECT coalesce(category_id::text, ''), count(*) FROM "
                        "bench.fts WHERE %s GROUP BY 1" % where):
            if not c:
                continue
            p = path(c)
            top = p[min(1, len(p) - 1)]
            by_cat[top] = by_cat.get(top, 0) + int(n)
        if not by_cat:
            continue
        top = max(sorted(by_cat), key=lambda c: by_cat[c])
        lo_p, hi_p = sql("SELECT percentile_disc(0.25) WITHIN GROUP (ORDER BY price_minor), "
                         "percentile_disc(0.75) WITHIN GROUP (ORDER BY price_minor) "
                         "FROM bench.fts WHERE %s" % where)[0]
        fq = Query("filtered", w, category=top, subtree=subtree(top),
                   min_price=max(1, int(lo_p)), max_price=max(1, int(hi_p)),
                   in_stock=True)
        if int(sql(fq.count_sql())[0][0]) > 0:
            q["filtered"].append(fq)

    floors = [100 * k for k in range(1, 33)]
    q["facets"] = [Query("facets", w, min_price=f, in_stock=True)
                   for f in floors for w in common]

    for t in TYPES:
        if not q[t]:
            sys.exit("pick.py: no %s query fits this catalog" % t)
        with open(os.path.join(a.out, t + ".tsv"), "w") as f:
            f.writelines(x.tsv() + "\n" for x in q[t])
        with open(os.path.join(a.out, t + ".paths"), "w") as f:
            f.writelines(x.path() + "\n" for x in q[t])
        # PostgreSQL has no result cache to defeat: a few facet queries
        # spread over the words and floors stand for all of them.
        pgq = q[t][::8][:16] if t == "facets" else q[t]
        for i, x in enumerate(pgq):
            with open(os.path.join(a.out, "pg", "%s-%02d.sql" % (t, i + 1)), "w") as f:
                f.write(x.pg() + "\n")
        with open(os.path.join(a.out, t + ".count.sql"), "w") as f:
            f.write(q[t][0].count_sql() + "\n")

    ids = sql("SELECT id FROM bench.fts ORDER BY md5(id::text) LIMIT %d" % a.reads)
    with open(os.path.join(a.out, "reads.paths"), "w") as f:
        f.writelines("/v1/products/%s\n" % r[0] for r in ids)

    with open(os.path.join(a.out, "queries.txt"), "w") as f:
        f.write("%d searchable products; %d product ids for reads\n" % (total, len(ids)))
        for t in TYPES:
            f.write("%s: %d distinct, e.g. %s\n" % (t, len(q[t]), q[t][0].describe()))
            for x in q[t][1:8]:
                f.write("    %s\n" % x.describe())


if __name__ == "__main__":
    main()
