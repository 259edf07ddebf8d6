"""Differential test of catalog search: for a few thousand random queries
and filter combinations on a generated 10,000-product catalog, what
estore-catalog's SearchProducts answers (from its in-memory index) equals
what PostgreSQL computes by brute force over the same rows
(test_catalog_diff.sql): the total, the full match set (paged through with
page tokens while it is small), every facet count, and the typo
corrections reported. Ranking aside.

The catalog is generated from a fixed seed straight into PostgreSQL: a
three-level category tree, 40 stores (two suspended), products whose
titles, descriptions and attribute values draw words from a vocabulary with
a Zipf-like distribution (a few words in thousands of products, most in a
handful), with near-miss spellings of one another, a family of model codes
that share prefixes, a few non-ASCII and over-long words, prices on and
around the facet bounds, stock (some none), and draft and archived
products.

Run by ctest (see CMakeLists.txt here) or by hand:
    /usr/bin/python3 tests/integration/test_catalog_diff.py \
        --catalog BUILD/services/catalog/estore-catalog \
        --token BUILD/services/token/estore-token
"""

import concurrent.futures
import json
import math
import os
import random
import subprocess
import time
import uuid

import fixture

import grpc

SEED = 20261202
N_PRODUCTS = 10_000
N_QUERIES = 2_000
# Match sets up to this size are paged through and compared id by id;
# larger ones by their total and facets (each page costs the service a
# read of every product on it).
PAGE_ALL_UP_TO = 500
PAGE_SIZE = 100  # the largest the service allows
SORTS = ("", "relevance", "price", "-price", "newest", "rating")
# The service's price facet bounds (services/catalog/service.c): some
# prices and price filters sit on them and one off.
PRICE_BOUNDS = (0, 1000, 2500, 5000, 10000, 25000, 50000, 100000)


def C():
    return fixture.pb2("catalog")


# ---- the catalog ----------------------------------------------------------

CONSONANTS = "bcdfghjklmnprstvz"
VOWELS = "aeiou"
COLORS = ("black", "white", "red", "navy blue", "green", "grey", "silver", "gold",
          "Off-White", "beige", "pink", "orange", "yellow", "purple", "brown",
          "sky blue", "olive", "teal")
MATERIALS = ("cotton", "wool", "leather", "stainless steel", "oak", "bamboo",
             "glass", "ceramic", "nylon", "linen")
SIZES = ("S", "M", "L", "XL", "XXL", "38", "40", "42", "44", "46")
# Bytes >= 0x80 belong to words and ASCII case folding leaves them alone
# ("CRÈME" is "crÈme"); the last two are cut to 64 bytes.
ODD_WORDS = ("café", "crème", "CRÈME", "größe", "naïve", "façade", "jalapeño", "smörgås",
             "ultra" * 14, "bélé" * 12)
HUB = "qzkv"


def pseudo_word(rng, syllables=None):
    n = syllables or rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5))
    w = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(n))
    return w + rng.choice(CONSONANTS) if rng.random() < 0.4 else w


def edit(rng, w):
    """w with one random edit (by character): substitution, adjacent swap,
    insertion or deletion."""
    letters = CONSONANTS + VOWELS
    for _ in range(20):
        op, i = rng.randrange(4), rng.randrange(len(w))
        if op == 0:
            out = w[:i] + rng.choice(letters) + w[i + 1:]
        elif op == 1 and i + 1 < len(w):
            out = w[:i] + w[i + 1] + w[i] + w[i + 2:]
        elif op == 2:
            out = w[:i] + rng.choice(letters) + w[i:]
        elif len(w) > 1:
            out = w[:i] + w[i + 1:]
        else:
            continue
        if out != w:
            return out
    return w + "x"


def zipf_weights(n, s=1.07):
    return [1.0 / (r + 1) ** s for r in range(n)]


class Catalog:
    """The generated rows, and what queries draw from."""

    def __init__(self, seed):
        rng = random.Random(seed)
        self.rng = rng
        uid = lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))

        words = set()
        while len(words) < 1200:
            words.add(pseudo_word(rng))
        base = sorted(words)
        # Near misses: one edit apart, so corrections have to choose.
        for w in rng.sample(base, 200):
            words.add(edit(rng, w))
        # Clusters: four words differing in one position, so a misspelling
        # there has more candidates than the three corrections kept.
        for w in rng.sample([w for w in base if len(w) >= 5], 25):
            i = rng.randrange(len(w))
            for c in rng.sample(VOWELS if w[i] in VOWELS else CONSONANTS, 4):
                words.add(w[:i] + c + w[i + 1:])
        self.codes = sorted({"mx%03d" % rng.randrange(1000) for _ in range(180)})
        vocab = sorted(words) + list(ODD_WORDS)
        rng.shuffle(vocab)
        # A dense family of codes: every one-letter substitution of HUB,
        # 100 words at distance 1 from it. The most frequent of them differ
        # in the last letter, the rest are rare: the corrections of HUB
        # must be found among all 100, whatever order a lookup meets them.
        for i in range(len(HUB)):
            for c in sorted(set("abcdefghijklmnopqrstuvwxyz") - {HUB[i]}):
                w = HUB[:i] + c + HUB[i + 1:]
                at = rng.randrange(50, 300) if i == len(HUB) - 1 else \
                    rng.randrange(800, len(vocab))
                vocab.insert(at, w)
        self.vocab = vocab
        self.weights = zipf_weights(len(vocab))
        self.brands = [pseudo_word(rng, rng.choice((2, 3))).capitalize() for _ in range(50)]
        self.brand_w = zipf_weights(len(self.brands), 0.9)

        # Categories: 6 roots, 4 children each, 4 grandchildren each.
        self.categories = []  # (id, parent id or None, slug, name)
        for i in range(6):
            root = uid()
            self.categories.append((root, None, "dept-%d" % i, "Department %d" % i))
            for j in range(4):
                mid = uid()
                self.categories.append((mid, root, "aisle-%d" % j, "Aisle %d.%d" % (i, j)))
                for k in range(4):
                    self.categories.append((uid(), mid, "shelf-%d" % k,
                                            "Shelf %d.%d.%d" % (i, j, k)))
        leaves = [c[0] for c in self.categories if c[2].startswith("shelf")]
        mids = [c[0] for c in self.categories if c[2].startswith("aisle")]
        roots = [c[0] for c in self.categories if c[1] is None]

        self.stores = []  # (id, owner, slug, status)
        for i in range(40):
            self.stores.append((uid(), uid(), "store-%02d" % i,
                                "suspended" if i in (7, 23) else "active"))
        store_w = zipf_weights(len(self.stores), 0.6)

        self.products = []
        for _ in range(N_PRODUCTS):
            attrs = {}
            if rng.random() < 0.7:
                attrs["brand"] = rng.choices(self.brands, self.brand_w)[0]
            if rng.random() < 0.6:
                attrs["color"] = rng.choice(COLORS)
            if rng.random() < 0.4:
                attrs["material"] = rng.choice(MATERIALS)
            if rng.random() < 0.3:
                attrs["size"] = rng.choice(SIZES)
            title = self.draw(rng.randint(2, 5))
            if rng.random() < 0.15:
                code = rng.choice(self.codes)
                attrs["model"] = code.upper()
                title.append(code.upper())
            if "brand" in attrs and rng.random() < 0.5:
                title.insert(0, attrs["brand"])
            title = [w.capitalize() if rng.random() < 0.3 else w for w in title]
            sep = rng.choice((" ", " ", " ", "-", ", "))
            desc = " ".join(self.draw(rng.randint(5, 14))) + "."
            r = rng.random()
            cat = (rng.choice(leaves) if r < 0.85 else rng.choice(mids) if r < 0.93
                   else rng.choice(roots) if r < 0.97 else None)
            r = rng.random()
            if r < 0.08:
                price = rng.choice(PRICE_BOUNDS)
                price = max(0, price + rng.choice((-1, 0, 0, 1)))
            else:
                price = int(math.exp(rng.uniform(math.log(50), math.log(300000))))
            r = rng.random()
            status = "draft" if r < 0.07 else "archived" if r < 0.12 else "active"
            self.products.append({
                "id": uid(), "store": rng.choices(self.stores, store_w)[0][0],
                "title": sep.join(title)[:200], "description": desc, "category": cat,
                "price": price, "attributes": attrs, "status": status,
                "stock": 0 if rng.random() < 0.25 else rng.randint(1, 50),
                "rating": round(rng.uniform(0, 5), 2), "votes": rng.randint(0, 500),
                "sales": rng.randint(0, 10000), "age_days": rng.randint(0, 900)})

    def draw(self, n):
        return self.rng.choices(self.vocab, self.weights, k=n)

    def sql(self):
        """psql input that loads every row with COPY."""
        def row(*cols):
            out = []
            for c in cols:
                if c is None:
                    out.append("\\N")
                else:
                    s = str(c)
                    for a, b in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
                        s = s.replace(a, b)
                    out.append(s)
            return "\t".join(out)
        lines = ["BEGIN;",
                 "COPY catalog.categories (id, parent_id, slug, name) FROM stdin;"]
        lines += [row(*c) for c in self.categories] + ["\\."]
        lines.append("COPY catalog.stores (id, owner_id, slug, name, status) FROM stdin;")
        lines += [row(s[0], s[1], s[2], "Store " + s[2], s[3]) for s in self.stores] + ["\\."]
        lines.append("COPY catalog.products (id, store_id, title, description, category_id, "
                     "price_minor, currency, attributes, status, stock, rating_average, "
                     "rating_count, sales_count, create_time) FROM stdin;")
        for p in self.products:
            lines.append(row(p["id"], p["store"], p["title"], p["description"], p["category"],
                             p["price"], "EUR", json.dumps(p["attributes"], ensure_ascii=False),
                             p["status"], p["stock"], p["rating"], p["votes"], p["sales"],
                             time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                           time.gmtime(1767225600 - p["age_days"] * 86400))))
        lines += ["\\.", "COMMIT;", "ANALYZE;"]
        return "\n".join(lines) + "\n"


# ---- the queries ----------------------------------------------------------

class Query:
    def __init__(self, qid):
        self.qid = qid
        self.kind = ""
        self.q = ""
        self.category = None
        self.stores = []
        self.min_price = 0
        self.max_price = 0
        self.attrs = []  # (key, value)
        self.in_stock = False
        self.sort = ""

    def request(self, page_size, token=""):
        return C().SearchProductsRequest(
            q=self.q, category=self.category or "", store=self.stores,
            min_price=self.min_price, max_price=self.max_price,
            attribute=["%s:%s" % kv for kv in self.attrs], in_stock=self.in_stock,
            sort=self.sort, page_size=page_size, page_token=token)

    def __str__(self):
        parts = ["q=%r (%s)" % (self.q, self.kind)]
        if self.category:
            parts.append("category=%s" % self.category)
        if self.stores:
            parts.append("store=%s" % self.stores)
        if self.min_price:
            parts.append("min_price=%d" % self.min_price)
        if self.max_price:
            parts.append("max_price=%d" % self.max_price)
        if self.attrs:
            parts.append("attribute=%s" % ["%s:%s" % kv for kv in self.attrs])
        if self.in_stock:
            parts.append("in_stock")
        parts.append("sort=%r" % self.sort)
        return "query %d: %s" % (self.qid, " ".join(parts))


def make_queries(cat, n, seed):
    rng = random.Random(seed)
    # Common words more often than rare ones, but less skewed than in the
    # products: a word in nearly every product costs SQL a row per product
    # each time it is asked, and asking it a few dozen times is enough.
    query_weights = zipf_weights(len(cat.vocab), 0.6)
    pick_common = lambda: rng.choices(cat.vocab, query_weights)[0]
    pick_any = lambda: rng.choice(cat.vocab)
    pick = lambda: pick_common() if rng.random() < 0.5 else pick_any()
    title_words = [p["title"].replace("-", " ").replace(",", " ").split()
                   for p in cat.products]
    long_words = [w for w in cat.vocab if len(w.encode()) >= 8]
    attr_values = {}
    for p in cat.products:
        for k, v in p["attributes"].items():
            attr_values.setdefault(k, {}).setdefault(v, 0)
            attr_values[k][v] += 1
    attr_values = {k: sorted(v, key=lambda x: (-v[x], x)) for k, v in attr_values.items()}
    bounds = PRICE_BOUNDS

    def misspell(w, edits):
        out = w
        for _ in range(edits):
            out = edit(rng, out)
        return out

    queries = []
    for qid in range(n):
        q = Query(qid)
        if queries and rng.random() < 0.04:
            # The same match set again (the facet cache), maybe another order.
            old = rng.choice(queries)
            q.__dict__.update({k: v for k, v in old.__dict__.items() if k != "qid"})
            q.kind += ", again"
            q.sort = rng.choice(SORTS)
            queries.append(q)
            continue
        r = rng.random()
        if r < 0.06:
            q.kind, q.q = "none", ""
        elif r < 0.32:
            q.kind, q.q = "one word", pick()
        elif r < 0.45:
            t = rng.choice(title_words)
            if len(t) >= 2:
                q.kind, q.q = "two title words", " ".join(rng.sample(t, 2))
            else:
                q.kind, q.q = "two words", "%s %s" % (pick(), pick())
        elif r < 0.50:
            q.kind, q.q = "two words", "%s %s" % (pick(), pick())
        elif r < 0.62:
            w = rng.choice(cat.codes) if rng.random() < 0.2 else pick()
            cut = rng.randint(1, max(1, len(w) - 1))
            q.kind = "prefix"
            q.q = (pick() + " " if rng.random() < 0.4 else "") + w[:cut]
        elif r < 0.76:
            q.kind, q.q = "1 edit", misspell(pick(), 1)
        elif r < 0.84:
            q.kind, q.q = "2 edits", misspell(rng.choice(long_words), 2)
        elif r < 0.88:
            q.kind = "misspelt + word"
            q.q = "%s %s" % (misspell(pick(), rng.choice((1, 2))), pick())
        elif r < 0.92:
            q.kind, q.q = "no such word", "qx" + pseudo_word(rng) + "zq"
        elif r < 0.95:
            q.kind = "punctuation and case"
            q.q = "  %s, %s!" % (pick().upper(), pick().capitalize())
        else:
            q.kind, q.q = "odd word", rng.choice(ODD_WORDS + ("CAFÉ", "cafe", "creme", HUB))
        # Filters, each on a good share of the catalog at most, so that
        # combined with words they still leave something to compare.
        if rng.random() < 0.18:
            level = rng.choices(("dept", "aisle", "shelf"), (4, 4, 2))[0]
            q.category = rng.choice([c for c in cat.categories if c[2].startswith(level)])[0]
        if rng.random() < 0.15:
            q.stores = [s[0] for s in rng.sample(cat.stores, rng.randint(1, 6))]
        if rng.random() < 0.18:
            lo = rng.choice(bounds[1:]) + rng.choice((-1, 0, 0, 1)) if rng.random() < 0.5 \
                else rng.randint(1, 60000)
            q.min_price = lo
        if rng.random() < 0.18:
            hi = rng.choice(bounds[1:]) + rng.choice((-1, 0, 0, 1)) if rng.random() < 0.5 \
                else rng.randint(1, 200000)
            q.max_price = hi if hi >= q.min_price else q.min_price + rng.randint(0, 20000)
        if rng.random() < 0.18:
            keys = rng.sample(sorted(attr_values), rng.choice((1, 1, 2)))
            for k in keys:
                # The values products have most often, mostly.
                for v in rng.sample(attr_values[k][:rng.choice((3, 10, 1000))],
                                    rng.choice((1, 1, 2))):
                    q.attrs.append((k, v))
            if rng.random() < 0.1:
                q.attrs.append((keys[0], "no such value"))
        q.in_stock = rng.random() < 0.2
        if q.kind == "none" and not (q.category or q.stores or q.min_price or q.max_price
                                     or q.attrs or q.in_stock) and rng.random() < 0.9:
            # Everything, unfiltered, is one answer: a few of those suffice.
            q.in_stock = True
        q.sort = rng.choice(SORTS)
        queries.append(q)
    return queries


def queries_sql(queries):
    def esc(s):
        for a, b in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r")):
            s = s.replace(a, b)
        return s
    lines = ["COPY searchdiff.queries (qid, q, category, min_price, max_price, in_stock) "
             "FROM stdin;"]
    lines += ["%d\t%s\t%s\t%d\t%d\t%s" % (q.qid, esc(q.q), q.category or "\\N", q.min_price,
                                          q.max_price, "t" if q.in_stock else "f")
              for q in queries]
    lines += ["\\.", "COPY searchdiff.qstores (qid, store) FROM stdin;"]
    lines += ["%d\t%s" % (q.qid, s) for q in queries for s in q.stores]
    lines += ["\\.", "COPY searchdiff.qattrs (qid, key, value) FROM stdin;"]
    lines += ["%d\t%s\t%s" % (q.qid, esc(k), esc(v)) for q in queries for k, v in q.attrs]
    lines += ["\\.", "ANALYZE searchdiff.queries;", "ANALYZE searchdiff.qstores;",
              "ANALYZE searchdiff.qattrs;"]
    return "\n".join(lines) + "\n"


# ---- the comparison -------------------------------------------------------

def expected_corrected_query(words, corrections):
    """What the service reports: every query word, each one that was
    corrected replaced by its first correction; empty without any."""
    if not corrections:
        return ""
    out = []
    for w in words:
        for frm, to in corrections:
            if frm == w:
                w = to
                break
        out.append(w)
    return " ".join(out)


def diff_lists(what, got, want):
    if got == want:
        return []
    g, w = dict((x[0], x[1:]) for x in got), dict((x[0], x[1:]) for x in want)
    if g == w:
        return ["%s: same counts in another order: got %s, want %s" % (what, got, want)]
    keys = sorted(set(g) | set(w), key=str)
    d = ["%s %s: got %s, want %s" % (what, k, g.get(k), w.get(k))
         for k in keys if g.get(k) != w.get(k)]
    return d[:20] + (["... %d more" % (len(d) - 20)] if len(d) > 20 else [])


class SearchDiffTest(fixture.StackTestCase):
    SERVICES = ("token", "catalog")
    SERVICE_ENV = {"catalog": {"GRPC_WORKERS": "8", "DB_POOL_SIZE": "4"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        st = cls.stack
        try:
            t0 = time.monotonic()
            cls.cat = Catalog(SEED)
            cls.queries = make_queries(cls.cat, N_QUERIES, SEED + 1)
            # The catalog has created its schema; the rows go in while it is
            # stopped, so that its start-up build reads them all at once.
            st.stop_service("catalog")
            cls.psql_wait(cls.psql_start(cls.cat.sql(), "load"))
            st.start_service("catalog", extra_env=cls.SERVICE_ENV["catalog"])
            sql = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                               "test_catalog_diff.sql")
            with open(sql, encoding="utf-8") as f:
                cls.psql_wait(cls.psql_start(f.read(), "functions"))
            print("\ncatalog generated and loaded in %.1f s" % (time.monotonic() - t0),
                  flush=True)
        except BaseException:
            st.failed = True
            st.close()
            raise

    @classmethod
    def psql_start(cls, script, name):
        """psql running `script` (written to a file in the stack's
        directory), its output going to another file there."""
        st = cls.stack
        path = os.path.join(st.dir, "diff-%s.sql" % name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(script)
        out = open(os.path.join(st.dir, "diff-%s.out" % name), "w+", encoding="utf-8")
        err = open(os.path.join(st.dir, "diff-%s.err" % name), "w+", encoding="utf-8")
        p = subprocess.Popen([os.path.join(fixture.PG_BIN, "psql"), "-X", "-q", "-At",
                              "-v", "ON_ERROR_STOP=1", "-h", st.net.addr("postgres"),
                              "-p", str(st.db_port), "-U", "estore", "-d", "estore",
                              "-f", path],
                             stdout=out, stderr=err,
                             env=dict(os.environ, PGCONNECT_TIMEOUT="5",
                                      PGCLIENTENCODING="UTF8"))
        return p, out, err

    @staticmethod
    def psql_wait(job, timeout=240):
        p, out, err = job
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise
        finally:
            out.seek(0)
            err.seek(0)
            text, errors = out.read(), err.read()
            out.close()
            err.close()
        if p.returncode != 0:
            raise RuntimeError("psql: %s" % errors.strip())
        return text

    def search(self, req):
        return self.stack.stub("catalog").SearchProducts(req, timeout=30)

    def wait_for_index(self, searchable):
        """The index is built after the service says SERVING."""
        def ready():
            try:
                return self.search(C().SearchProductsRequest(page_size=1)).total_size
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return None
        got = fixture.wait_until(lambda: ready() == searchable, 30, 0.1)
        self.assertTrue(got, "the index never held the %d searchable products (%s)"
                        % (searchable, ready()))

    def fetch(self, q):
        """The service's answer to query q: the first page's total, facets
        and corrected query, and while the total is small, every id of
        every page, with what went wrong while paging."""
        first = self.search(q.request(PAGE_SIZE))
        f = first.facets
        got = {
            "total": first.total_size,
            "categories": [(c.value, c.count) for c in f.categories],
            "stores": [(c.value, c.count) for c in f.stores],
            "prices": [((p.min_minor, p.max_minor), p.count) for p in f.prices],
            "attributes": {k: [(v.value, v.count) for v in a.values]
                           for k, a in f.attributes.items()},
            "corrected_query": first.corrected_query,
            "ids": None,
            "paging": [],
        }
        if first.total_size > PAGE_ALL_UP_TO:
            return got
        ids, page, pages = [p.id for p in first.products], first, 1
        limit = PAGE_ALL_UP_TO // PAGE_SIZE + 2
        while page.next_page_token and pages < limit:
            page = self.search(q.request(PAGE_SIZE, page.next_page_token))
            pages += 1
            if page.total_size != first.total_size:
                got["paging"].append("total_size changed to %d on page %d"
                                     % (page.total_size, pages))
            ids += [p.id for p in page.products]
        if page.next_page_token:
            got["paging"].append("still a next page after %d pages" % pages)
        if len(ids) != len(set(ids)):
            got["paging"].append("ids repeated across pages: %s"
                                 % sorted({i for i in ids if ids.count(i) > 1})[:20])
        got["ids"] = ids
        return got

    @staticmethod
    def compare(got, want):
        """The differences between the service's answer and SQL's."""
        diffs = list(got["paging"])
        if got["total"] != want["total"]:
            diffs.append("total_size: got %d, want %d" % (got["total"], want["total"]))
        cq = expected_corrected_query(want["words"], want["corrections"])
        if got["corrected_query"] != cq:
            diffs.append("corrected_query: got %r, want %r (words %s, SQL corrections %s)"
                         % (got["corrected_query"], cq, want["words"], want["corrections"]))
        if got["ids"] is not None and want["ids"] is not None:
            g, w = set(got["ids"]), set(want["ids"])
            if g != w:
                diffs.append("ids only the service found: %s" % sorted(g - w)[:20])
                diffs.append("ids only SQL found: %s" % sorted(w - g)[:20])
        diffs += diff_lists("category", got["categories"],
                            [tuple(x) for x in want["categories"]])
        diffs += diff_lists("store", got["stores"], [tuple(x) for x in want["stores"]])
        diffs += diff_lists("price bucket", got["prices"],
                            [((x[0], x[1]), x[2]) for x in want["prices"]])
        gattrs, wattrs = got["attributes"], want["attributes"]
        for key in sorted(set(gattrs) | set(wattrs)):
            diffs += diff_lists("attribute %s value" % key, gattrs.get(key, []),
                                [tuple(x) for x in wattrs.get(key, [])])
        return diffs

    def test_search_equals_brute_force_sql(self):
        stores_off = {s[0] for s in self.cat.stores if s[3] != "active"}
        searchable = sum(1 for p in self.cat.products
                         if p["status"] == "active" and p["store"] not in stores_off)
        # SQL works on the other core while the service answers.
        t0 = time.monotonic()
        job = self.psql_start(queries_sql(self.queries) +
                              "SELECT * FROM searchdiff.answers(%d);\n" % PAGE_ALL_UP_TO,
                              "answers")
        try:
            self.wait_for_index(searchable)
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                got = list(pool.map(self.fetch, self.queries))
            t1 = time.monotonic()
        finally:
            out = self.psql_wait(job)
        t2 = time.monotonic()
        want = {}
        for line in out.splitlines():
            if line.startswith("{"):
                a = json.loads(line)
                want[a["qid"]] = a
        self.assertEqual(sorted(want), [q.qid for q in self.queries])
        bad = []
        for q, g in zip(self.queries, got):
            d = self.compare(g, want[q.qid])
            if d:
                bad.append((q, d))
        kinds = {}
        for q in self.queries:
            kinds[q.kind] = kinds.get(q.kind, 0) + 1
        totals = [want[q.qid]["total"] for q in self.queries]
        print("%d queries: the service answered in %.1f s, SQL in %.1f s; %d empty, "
              "%d with up to %d matches (compared id by id), %d more; %d corrected; %s"
              % (len(self.queries), t1 - t0, t2 - t0, totals.count(0),
                 sum(1 for t in totals if 0 < t <= PAGE_ALL_UP_TO), PAGE_ALL_UP_TO,
                 sum(1 for t in totals if t > PAGE_ALL_UP_TO),
                 sum(1 for q in self.queries if want[q.qid]["corrections"]),
                 ", ".join("%s %d" % kv for kv in sorted(kinds.items()))), flush=True)
        if bad:
            msg = ["%d of %d queries differ from SQL; the first ones:"
                   % (len(bad), len(self.queries))]
            for q, d in bad[:8]:
                msg.append(str(q))
                msg += ["    " + x for x in d[:30]]
                if len(d) > 30:
                    msg.append("    ... %d more differences" % (len(d) - 30))
            self.fail("\n".join(msg))


if __name__ == "__main__":
    fixture.main()
