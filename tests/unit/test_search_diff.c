/*
 * test_search_diff.c - the search engine against a brute-force model.
 *
 * A deterministic random catalog of 10,000 products is loaded into two
 * indexes and into a plain array: A counts facets by bitmap intersection
 * and is renumbered by static score (so relevance top-k stops early), B
 * counts facets by passes over the matches and is never renumbered (every
 * match is scored). Products are then replaced, removed and added. For a
 * few thousand random queries (exact, prefix, misspelt and unknown words,
 * every filter, every sort) the model computes by brute force, from the
 * rules in search.h, the match set, its size and every facet count; both
 * indexes must agree exactly, page through the match set exactly once in
 * the model's order (relevance: A and B identical, score by score), and
 * give the same Suggest answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "search.h"

#define NDOCS 10000
#define NQUERIES 1200
#define T0 1700000000
#define MAXTOK 48
/* Fewer corrections than candidates is common, so their order matters. */
#define MAXCORR 2

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}
static uint32_t below(uint32_t n)
{
	return rnd() % n;
}

/* ---- the model's own word table ------------------------------------ */

#define VCAP 8192
static char vocab[VCAP][ES_MAX_TOKEN_BYTES + 1];
static uint32_t vhash[VCAP * 2];
static int nvocab;
static int df[VCAP];

static uint32_t fnv(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static int vocab_id(const char *s, size_t n, bool add)
{
	uint32_t h = fnv(s, n) & (VCAP * 2 - 1);
	for (;; h = (h + 1) & (VCAP * 2 - 1)) {
		uint32_t v = vhash[h];
		if (!v)
			break;
		if (strlen(vocab[v - 1]) == n && memcmp(vocab[v - 1], s, n) == 0)
			return (int)v - 1;
	}
	if (!add)
		return -1;
	assert_true(nvocab < VCAP);
	memcpy(vocab[nvocab], s, n);
	vocab[nvocab][n] = '\0';
	vhash[h] = (uint32_t)++nvocab;
	return nvocab - 1;
}

/* ---- the model's products ------------------------------------------ */

typedef struct {
	char id[24], store[8], cats[3][16], title[160], desc[320];
	int ncat, nattr;
	char akey[5][12], aval[5][24];
	int64_t price, stock, created;
	double rating;
	uint32_t rating_count;
	uint64_t sales;
	bool live;
	int toks[MAXTOK * 2], ntok;   /* distinct words, any field */
	int ttoks[MAXTOK], nttok;     /* distinct title words */
	double stat_a;                /* not known to the model; unused */
} mdoc;

static mdoc docs[NDOCS + 1000];
static int ndocs;

static const char *syll[] = {"ka", "ro", "mi", "te", "lu", "sa", "ne", "po", "ri", "da",
			     "ve", "ko", "an", "el", "ur", "is", "ot", "ba", "fe", "gi"};
static char words[600][16];
static const char *attr_keys[] = {"color", "size", "brand", "material", "style"};
static const char *attr_vals[5][9] = {
	{"red", "dark blue", "green", "black", "white", "silver", "rose gold", "beige", NULL},
	{"s", "m", "l", "xl", "42", "10.5", NULL},
	{"kaloro", "mitesa", "nepori", "vekoan", "Ursano", "elisot", "bafegi", "darote", NULL},
	{"cotton", "steel", "oak wood", "glass", "wool", NULL},
	{"modern", "classic", "retro", "sport", NULL},
};
static const int64_t common_prices[] = {999, 1999, 2500, 4999, 9999, 12900, 19900, 49900};

static void make_words(void)
{
	for (int i = 0; i < 600; i++) {
		int n = 1 + (int)below(5);
		words[i][0] = '\0';
		for (int j = 0; j < n; j++)
			strcat(words[i], syll[below(20)]);
		/* Near neighbours make corrections ambiguous: one edit apart. */
		if (i % 7 == 0 && i > 0) {
			strcpy(words[i], words[i - 1]);
			size_t l = strlen(words[i]);
			words[i][below((uint32_t)l)] = (char)('a' + below(26));
		}
	}
}

/* Common words often, rare ones seldom. */
static const char *word(void)
{
	uint32_t r = below(1000);
	return words[(r * r / 1000) * 599 / 999];
}

typedef struct {
	mdoc *d;
	bool title;
} tokctx;

static void add_tok(int *arr, int *n, int max, int id)
{
	for (int i = 0; i < *n; i++)
		if (arr[i] == id)
			return;
	assert_true(*n < max);
	arr[(*n)++] = id;
}

static bool model_tok(const char *w, size_t n, void *arg)
{
	tokctx *c = arg;
	int id = vocab_id(w, n, true);
	add_tok(c->d->toks, &c->d->ntok, MAXTOK * 2, id);
	if (c->title)
		add_tok(c->d->ttoks, &c->d->nttok, MAXTOK, id);
	return true;
}

static void random_doc(mdoc *d, const char *id)
{
	memset(d, 0, sizeof *d);
	strcpy(d->id, id);
	snprintf(d->store, sizeof d->store, "s%02u", below(25));
	d->ncat = 1 + (int)below(3);
	uint32_t a = below(6), b = below(4), c = below(3);
	snprintf(d->cats[0], 16, "c%u", a);
	snprintf(d->cats[1], 16, "c%u.%u", a, b);
	snprintf(d->cats[2], 16, "c%u.%u.%u", a, b, c);
	int nt = 2 + (int)below(5);
	for (int i = 0; i < nt; i++) {
		if (i)
			strcat(d->title, below(4) ? " " : ", ");
		char w[16];
		strcpy(w, word());
		if (below(5) == 0)
			w[0] = (char)(w[0] - 32); /* capitalised */
		strcat(d->title, w);
	}
	int nd = (int)below(13);
	for (int i = 0; i < nd; i++) {
		if (i)
			strcat(d->desc, below(6) ? " " : ". ");
		strcat(d->desc, word());
	}
	if (below(10) == 0)
		strcat(d->desc, " naïve crème-brûlée");
	for (int k = 0; k < 5; k++)
		if (below(2)) {
			int nv = 0;
			while (attr_vals[k][nv])
				nv++;
			strcpy(d->akey[d->nattr], attr_keys[k]);
			strcpy(d->aval[d->nattr], attr_vals[k][below((uint32_t)nv)]);
			d->nattr++;
		}
	if (below(2))
		d->price = common_prices[below(8)];
	else
		d->price = (int64_t)(below(30) == 0 ? below(40) : below(200000));
	d->stock = below(10) < 3 ? 0 : below(4);
	d->rating = below(51) / 10.0;
	d->rating_count = below(500);
	d->sales = below(4) ? below(100) : below(10000);
	d->created = T0 - (int64_t)below(1000) * 86400 - (below(3) ? 0 : below(86400));
	d->live = true;
	tokctx tc = {d, true};
	es_tokenize(d->title, model_tok, &tc);
	tc.title = false;
	for (int i = 0; i < d->nattr; i++)
		es_tokenize(d->aval[i], model_tok, &tc);
	es_tokenize(d->desc, model_tok, &tc);
}

static int upsert_doc(es_index *ix, const mdoc *m)
{
	const char *cats[3] = {m->cats[0], m->cats[1], m->cats[2]};
	es_attr attrs[5];
	for (int i = 0; i < m->nattr; i++)
		attrs[i] = (es_attr){m->akey[i], m->aval[i]};
	es_doc d = {.product_id = m->id,
		    .store_id = m->store,
		    .category_path = cats,
		    .category_count = (size_t)m->ncat,
		    .title = m->title,
		    .description = m->desc,
		    .attrs = attrs,
		    .attr_count = (size_t)m->nattr,
		    .price = m->price,
		    .currency = "USD",
		    .stock = m->stock,
		    .rating = m->rating,
		    .rating_count = m->rating_count,
		    .sales = m->sales,
		    .created = m->created};
	return es_upsert(ix, &d);
}

/* ---- brute-force matching ------------------------------------------ */

static int osa(const char *a, const char *b)
{
	int n = (int)strlen(a), m = (int)strlen(b);
	static int d[ES_MAX_TOKEN_BYTES + 2][ES_MAX_TOKEN_BYTES + 2];
	for (int i = 0; i <= n; i++)
		d[i][0] = i;
	for (int j = 0; j <= m; j++)
		d[0][j] = j;
	for (int i = 1; i <= n; i++)
		for (int j = 1; j <= m; j++) {
			int v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + (a[i - 1] != b[j - 1]) < v)
				v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[n][m];
}

static void compute_df(void)
{
	memset(df, 0, sizeof df);
	for (int i = 0; i < ndocs; i++)
		if (docs[i].live)
			for (int k = 0; k < docs[i].ntok; k++)
				df[docs[i].toks[k]]++;
}

/* Marks in ok[] the words a query word accepts, by the rules of search.h
 * with max_prefix_terms = 0, max_corrections = MAXCORR and rare_df = 0. */
static void accepted(const char *w, bool last, bool *ok)
{
	size_t n = strlen(w);
	memset(ok, 0, VCAP);
	int any = 0;
	for (int v = 0; v < nvocab; v++) {
		if (!df[v])
			continue;
		if (strcmp(vocab[v], w) == 0 || (last && n >= 2 && strncmp(vocab[v], w, n) == 0)) {
			ok[v] = true;
			any++;
		}
	}
	if (any)
		return;
	int maxd = n >= 8 ? 2 : n >= 4 ? 1 : 0;
	if (!maxd)
		return;
	int best = maxd + 1, cand[VCAP], nc = 0;
	for (int v = 0; v < nvocab; v++) {
		if (!df[v] || strlen(vocab[v]) < 4)
			continue;
		int d = osa(w, vocab[v]);
		if (d > maxd || d > best)
			continue;
		if (d < best) {
			best = d;
			nc = 0;
		}
		cand[nc++] = v;
	}
	/* The most frequent, then byte order. */
	for (int k = 0; k < MAXCORR && k < nc; k++) {
		int bi = k;
		for (int j = k + 1; j < nc; j++)
			if (df[cand[j]] > df[cand[bi]] ||
			    (df[cand[j]] == df[cand[bi]] && strcmp(vocab[cand[j]], vocab[cand[bi]]) < 0))
				bi = j;
		int t = cand[k];
		cand[k] = cand[bi];
		cand[bi] = t;
		ok[cand[k]] = true;
	}
}

typedef struct {
	char text[200];
	bool exact_last;
	const char *cats[2];
	size_t ncat;
	const char *stores[3];
	size_t nstore;
	bool has_min, has_max;
	int64_t min, max;
	es_attr_filter af[2];
	const char *afv[2][3];
	size_t naf;
	bool in_stock;
	es_sort sort;
} mquery;

static bool model_match(const mdoc *d, const mquery *q, bool ok[][VCAP], int nw)
{
	if (!d->live)
		return false;
	for (int i = 0; i < nw; i++) {
		bool hit = false;
		for (int k = 0; k < d->ntok && !hit; k++)
			hit = ok[i][d->toks[k]];
		if (!hit)
			return false;
	}
	if (q->ncat) {
		bool hit = false;
		for (size_t c = 0; c < q->ncat; c++)
			for (int k = 0; k < d->ncat; k++)
				hit |= strcmp(d->cats[k], q->cats[c]) == 0;
		if (!hit)
			return false;
	}
	if (q->nstore) {
		bool hit = false;
		for (size_t s = 0; s < q->nstore; s++)
			hit |= strcmp(d->store, q->stores[s]) == 0;
		if (!hit)
			return false;
	}
	if (q->has_min && d->price < q->min)
		return false;
	if (q->has_max && d->price > q->max)
		return false;
	for (size_t f = 0; f < q->naf; f++) {
		bool hit = false;
		for (int k = 0; k < d->nattr; k++)
			if (strcmp(d->akey[k], q->af[f].key) == 0)
				for (size_t v = 0; v < q->af[f].value_count; v++)
					hit |= strcmp(d->aval[k], q->af[f].values[v]) == 0;
		if (!hit)
			return false;
	}
	if (q->in_stock && d->stock <= 0)
		return false;
	return true;
}

static double sort_key(const mdoc *d, es_sort s)
{
	switch (s) {
	case ES_SORT_PRICE_ASC:
	case ES_SORT_PRICE_DESC: return (double)d->price;
	case ES_SORT_NEWEST: return (double)d->created;
	case ES_SORT_RATING: return d->rating;
	default: return 0;
	}
}

static es_sort cmp_sort;
static int model_cmp(const void *a, const void *b)
{
	const mdoc *x = *(mdoc *const *)a, *y = *(mdoc *const *)b;
	double kx = sort_key(x, cmp_sort), ky = sort_key(y, cmp_sort);
	if (kx != ky) {
		bool asc = cmp_sort == ES_SORT_PRICE_ASC;
		return (kx < ky) == asc ? -1 : 1;
	}
	return strcmp(x->id, y->id);
}

/* ---- facets by brute force ----------------------------------------- */

typedef struct {
	char value[40];
	uint64_t count;
} mcount;

static void bump(mcount *arr, size_t *n, const char *v)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(arr[i].value, v) == 0) {
			arr[i].count++;
			return;
		}
	strcpy(arr[*n].value, v);
	arr[(*n)++].count = 1;
}

static int mcount_cmp(const void *a, const void *b)
{
	const mcount *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->value, y->value);
}

static void check_counts(const es_count *got, size_t ngot, mcount *want, size_t nwant,
			 const char *what, const char *qtext)
{
	qsort(want, nwant, sizeof *want, mcount_cmp);
	if (ngot != nwant)
		fail_msg("query '%s': %s: %zu values, model %zu", qtext, what, ngot, nwant);
	for (size_t i = 0; i < nwant; i++)
		if (strcmp(got[i].value, want[i].value) != 0 || got[i].count != want[i].count)
			fail_msg("query '%s': %s[%zu]: %s=%llu, model %s=%llu", qtext, what, i,
				 got[i].value, (unsigned long long)got[i].count, want[i].value,
				 (unsigned long long)want[i].count);
}

static const int64_t bounds[] = {0, 1000, 5000, 20000, 100000};

static void check_facets(const es_result *r, mdoc **match, size_t n, const char *qtext)
{
	static mcount cats[256], stores[32], vals[5][16];
	size_t ncats = 0, nstores = 0, nvals[5] = {0};
	uint64_t keydocs[5] = {0}, price[5] = {0};
	for (size_t i = 0; i < n; i++) {
		const mdoc *d = match[i];
		for (int k = 0; k < d->ncat; k++)
			bump(cats, &ncats, d->cats[k]);
		bump(stores, &nstores, d->store);
		int b = -1;
		for (int k = 0; k < 5; k++)
			if (d->price >= bounds[k])
				b = k;
		if (b >= 0)
			price[b]++;
		for (int a = 0; a < d->nattr; a++)
			for (int k = 0; k < 5; k++)
				if (strcmp(d->akey[a], attr_keys[k]) == 0) {
					keydocs[k]++;
					bump(vals[k], &nvals[k], d->aval[a]);
				}
	}
	check_counts(r->categories, r->category_count, cats, ncats, "categories", qtext);
	check_counts(r->stores, r->store_count, stores, nstores, "stores", qtext);
	assert_int_equal(r->price_bucket_count, 5);
	for (int k = 0; k < 5; k++)
		if (r->price_buckets[k].count != price[k])
			fail_msg("query '%s': price bucket %d: %llu, model %llu", qtext, k,
				 (unsigned long long)r->price_buckets[k].count,
				 (unsigned long long)price[k]);
	size_t nkeys = 0;
	for (int k = 0; k < 5; k++)
		nkeys += keydocs[k] > 0;
	assert_int_equal(r->attr_count, nkeys);
	for (size_t i = 0; i < r->attr_count; i++) {
		int k = 0;
		while (k < 5 && strcmp(attr_keys[k], r->attrs[i].key) != 0)
			k++;
		assert_true(k < 5);
		assert_int_equal(r->attrs[i].docs, keydocs[k]);
		assert_int_equal(r->attrs[i].distinct_values, nvals[k]);
		check_counts(r->attrs[i].values, r->attrs[i].value_count, vals[k], nvals[k],
			     attr_keys[k], qtext);
	}
}

/* ---- the run --------------------------------------------------------- */

static es_index *ia, *ib;

static void load(void **state)
{
	(void)state;
	make_words();
	es_config cfg;
	es_config_default(&cfg);
	cfg.reference_time = T0;
	cfg.max_prefix_terms = 0;
	cfg.max_corrections = MAXCORR;
	cfg.facet_mode = 1;
	ia = es_create(&cfg);
	cfg.facet_mode = 2;
	ib = es_create(&cfg);
	assert_non_null(ia);
	assert_non_null(ib);
	for (ndocs = 0; ndocs < NDOCS; ndocs++) {
		char id[24];
		snprintf(id, sizeof id, "%08x-%05d", rnd(), ndocs);
		random_doc(&docs[ndocs], id);
		assert_int_equal(upsert_doc(ia, &docs[ndocs]), ES_OK);
		assert_int_equal(upsert_doc(ib, &docs[ndocs]), ES_OK);
	}
	assert_int_equal(es_optimize(ia), ES_OK);
	/* Churn after the renumbering: replacements, removals, newcomers. */
	for (int i = 0; i < 600; i++) {
		mdoc *d = &docs[below(NDOCS)];
		if (!d->live)
			continue;
		char id[24];
		strcpy(id, d->id);
		random_doc(d, id);
		assert_int_equal(upsert_doc(ia, d), ES_OK);
		assert_int_equal(upsert_doc(ib, d), ES_OK);
	}
	for (int i = 0; i < 400; i++) {
		mdoc *d = &docs[below(NDOCS)];
		int want = d->live ? ES_OK : ES_ENOTFOUND;
		assert_int_equal(es_remove(ia, d->id), want);
		assert_int_equal(es_remove(ib, d->id), want);
		d->live = false;
	}
	for (int i = 0; i < 300; i++, ndocs++) {
		char id[24];
		snprintf(id, sizeof id, "%08x-%05d", rnd(), ndocs);
		random_doc(&docs[ndocs], id);
		assert_int_equal(upsert_doc(ia, &docs[ndocs]), ES_OK);
		assert_int_equal(upsert_doc(ib, &docs[ndocs]), ES_OK);
	}
	compute_df();
	int live = 0;
	for (int i = 0; i < ndocs; i++)
		live += docs[i].live;
	es_stats sa, sb;
	es_get_stats(ia, &sa);
	es_get_stats(ib, &sb);
	assert_int_equal(sa.docs, live);
	assert_int_equal(sb.docs, live);
	assert_true(sa.tail_docs > 0 && sa.tail_docs < (uint64_t)live);
	assert_int_equal(sb.tail_docs, live);
}

static void random_word(char *out, bool last)
{
	const mdoc *d;
	do
		d = &docs[below((uint32_t)ndocs)];
	while (!d->live || !d->ntok);
	strcpy(out, vocab[d->toks[below((uint32_t)d->ntok)]]);
	size_t n = strlen(out);
	uint32_t how = below(100);
	if (how < 50)
		return;
	if (how < 70 && n > 1) {
		out[1 + below((uint32_t)n - 1)] = '\0'; /* a prefix */
		return;
	}
	if (how < 95 && n >= 3) {
		/* One or two edits. */
		for (int e = 0, ne = 1 + (int)below(2); e < ne; e++) {
			n = strlen(out);
			uint32_t p = below((uint32_t)n), kind = below(4);
			if (kind == 0 && n > 1)
				memmove(out + p, out + p + 1, n - p);
			else if (kind == 1 && n < 40) {
				memmove(out + p + 1, out + p, n - p + 1);
				out[p] = (char)('a' + below(26));
			} else if (kind == 2)
				out[p] = (char)('a' + below(26));
			else if (p + 1 < n) {
				char t = out[p];
				out[p] = out[p + 1];
				out[p + 1] = t;
			}
		}
		return;
	}
	snprintf(out, 16, "zq%ux", below(1000)); /* unknown */
	(void)last;
}

typedef struct {
	char id[24];
	double score;
} hit;

/* Pages through q on ix; returns the number of hits copied to out (at most
 * max) or -1 when the pages would be too many to walk. */
static long page_all(es_index *ix, es_query q, hit *out, size_t max, const char *qtext)
{
	uint8_t cur[512];
	size_t n = 0;
	for (int page = 0; page < 200; page++) {
		es_result r;
		int rc = es_search(ix, &q, &r);
		if (rc != ES_OK)
			fail_msg("query '%s': %s", qtext, es_strerror(rc));
		for (size_t i = 0; i < r.hit_count; i++) {
			if (n == max)
				fail_msg("query '%s': more hits than the model's %zu", qtext, max);
			strcpy(out[n].id, r.hits[i].product_id);
			out[n++].score = r.hits[i].score;
		}
		bool more = r.next_cursor != NULL;
		if (more) {
			memcpy(cur, r.next_cursor, r.next_cursor_len);
			q.cursor = cur;
			q.cursor_len = r.next_cursor_len;
		} else if (n != max) {
			fail_msg("query '%s': paging ended after %zu of %zu", qtext, n, max);
		}
		es_result_free(&r);
		if (!more)
			return (long)n;
	}
	fail_msg("query '%s': too many pages", qtext);
	return -1;
}

typedef struct {
	char w[4][ES_MAX_TOKEN_BYTES + 1];
	int n;
} qwords;

static bool diff_tok(const char *w, size_t n, void *arg)
{
	qwords *q = arg;
	memcpy(q->w[q->n], w, n);
	q->w[q->n][n] = '\0';
	return ++q->n < 4;
}

static void test_queries(void **state)
{
	(void)state;
	static bool ok[4][VCAP];
	static mdoc *match[NDOCS + 1000];
	static hit ha[NDOCS + 1000], hb[NDOCS + 1000];
	static char stores[25][8], cats[6 * 4 * 3 + 30][16];
	static char unknown_value[] = "no such value";
	int ncats = 0;
	for (int a = 0; a < 6; a++) {
		snprintf(cats[ncats++], 16, "c%d", a);
		for (int b = 0; b < 4; b++) {
			snprintf(cats[ncats++], 16, "c%d.%d", a, b);
			for (int c = 0; c < 3; c++)
				snprintf(cats[ncats++], 16, "c%d.%d.%d", a, b, c);
		}
	}
	for (int s = 0; s < 25; s++)
		snprintf(stores[s], 8, "s%02d", s);
	size_t nonempty = 0, typo_fixed = 0, walked = 0;
	int qi;
	time_t start = time(NULL);
	for (qi = 0; qi < NQUERIES && time(NULL) - start < 60; qi++) {
		mquery mq;
		memset(&mq, 0, sizeof mq);
		uint32_t r = below(100);
		int nw = r < 20 ? 0 : r < 65 ? 1 : r < 90 ? 2 : 3;
		char w[4][48];
		for (int i = 0; i < nw; i++) {
			random_word(w[i], i == nw - 1);
			if (i)
				strcat(mq.text, below(2) ? " " : " - ");
			if (below(6) == 0)
				w[i][0] = (char)(w[i][0] >= 'a' && w[i][0] <= 'z' ? w[i][0] - 32 : w[i][0]);
			strcat(mq.text, w[i]);
		}
		mq.exact_last = below(10) == 0;
		if (below(5) == 0) {
			mq.ncat = 1 + below(2);
			for (size_t i = 0; i < mq.ncat; i++)
				mq.cats[i] = below(20) ? cats[below((uint32_t)ncats)] : "c9";
		}
		if (below(6) == 0) {
			mq.nstore = 1 + below(3);
			for (size_t i = 0; i < mq.nstore; i++)
				mq.stores[i] = stores[below(25)];
		}
		if (below(5) == 0) {
			mq.has_min = below(2);
			mq.has_max = !mq.has_min || below(2);
			mq.min = below(2) ? common_prices[below(8)] : below(60000);
			mq.max = mq.min + (below(2) ? common_prices[below(8)] : below(150000));
		}
		if (below(5) == 0) {
			mq.naf = 1 + below(2);
			uint32_t k0 = below(5);
			for (size_t f = 0; f < mq.naf; f++) {
				uint32_t k = (k0 + (uint32_t)f) % 5, nv = 0;
				while (attr_vals[k][nv])
					nv++;
				size_t cnt = 1 + below(2);
				for (size_t v = 0; v < cnt; v++)
					mq.afv[f][v] =
						below(15) ? attr_vals[k][below(nv)] : unknown_value;
				mq.af[f] = (es_attr_filter){attr_keys[k], mq.afv[f], cnt};
			}
		}
		mq.in_stock = below(5) == 0;
		mq.sort = (es_sort)below(5);

		/* The words as the engine reads them. */
		qwords qw = {.n = 0};
		es_tokenize(mq.text, diff_tok, &qw);
		int nwl = qw.n;
		char(*words_lc)[ES_MAX_TOKEN_BYTES + 1] = qw.w;
		for (int i = 0; i < nwl; i++)
			accepted(words_lc[i], i == nwl - 1 && !mq.exact_last, ok[i]);

		size_t nm = 0;
		for (int i = 0; i < ndocs; i++)
			if (model_match(&docs[i], &mq, ok, nwl))
				match[nm++] = &docs[i];
		nonempty += nm > 0;

		es_query q = {.text = mq.text,
			      .exact_last = mq.exact_last,
			      .category_ids = mq.cats,
			      .category_count = mq.ncat,
			      .store_ids = mq.stores,
			      .store_count = mq.nstore,
			      .has_min_price = mq.has_min,
			      .has_max_price = mq.has_max,
			      .min_price = mq.min,
			      .max_price = mq.max,
			      .attr_filters = mq.af,
			      .attr_filter_count = mq.naf,
			      .in_stock_only = mq.in_stock,
			      .sort = mq.sort,
			      .page_size = 100,
			      .facets = true,
			      .price_bounds = bounds,
			      .price_bound_count = 5,
			      .facet_values_per_key = 100};
		const uint32_t sizes[] = {1, 7, 20, 100};
		q.page_size = sizes[below(4)];
		char qtext[400];
		snprintf(qtext, sizeof qtext, "%s | sort %d ps %u cats %zu stores %zu price %d%d attrs %zu stock %d",
			 mq.text, mq.sort, q.page_size, mq.ncat, mq.nstore, mq.has_min, mq.has_max, mq.naf,
			 mq.in_stock);
		es_index *both[2] = {ia, ib};
		/* Each index; every fourth query twice: computed, then from the
		 * facet cache. */
		for (int e = 0; e < 4; e++) {
			if (e % 2 && qi % 4)
				continue;
			es_result res;
			int rc = es_search(both[e / 2], &q, &res);
			if (rc != ES_OK)
				fail_msg("query '%s': %s", qtext, es_strerror(rc));
			if (res.total != nm)
				fail_msg("query '%s' on %c: total %llu, model %zu", qtext, "AB"[e / 2],
					 (unsigned long long)res.total, nm);
			typo_fixed += res.correction_count > 0 && e == 0;
			check_facets(&res, match, nm, qtext);
			es_result_free(&res);
		}
		/* Walk every page while that stays cheap; otherwise the first. */
		if (nm / q.page_size > 15)
			q.page_size = 100;
		bool walk = nm / q.page_size <= 15;
		walked += walk;
		cmp_sort = mq.sort;
		if (mq.sort != ES_SORT_RELEVANCE)
			qsort(match, nm, sizeof *match, model_cmp);
		size_t want = walk ? nm : (nm < q.page_size ? nm : q.page_size);
		long na, nb;
		if (walk) {
			na = page_all(ia, q, ha, nm, qtext);
			nb = page_all(ib, q, hb, nm, qtext);
		} else {
			es_result ra, rb;
			assert_int_equal(es_search(ia, &q, &ra), ES_OK);
			assert_int_equal(es_search(ib, &q, &rb), ES_OK);
			assert_int_equal(ra.hit_count, want);
			assert_int_equal(rb.hit_count, want);
			for (size_t i = 0; i < want; i++) {
				strcpy(ha[i].id, ra.hits[i].product_id);
				ha[i].score = ra.hits[i].score;
				strcpy(hb[i].id, rb.hits[i].product_id);
				hb[i].score = rb.hits[i].score;
			}
			es_result_free(&ra);
			es_result_free(&rb);
			na = nb = (long)want;
		}
		assert_int_equal(na, want);
		assert_int_equal(nb, want);
		for (size_t i = 0; i < want; i++) {
			if (mq.sort != ES_SORT_RELEVANCE) {
				if (strcmp(ha[i].id, match[i]->id) != 0 || strcmp(hb[i].id, match[i]->id) != 0)
					fail_msg("query '%s': hit %zu is %s/%s, model %s", qtext, i, ha[i].id,
						 hb[i].id, match[i]->id);
			} else {
				/* Early stop or not, the same page to the last bit. */
				if (strcmp(ha[i].id, hb[i].id) != 0 || ha[i].score != hb[i].score)
					fail_msg("query '%s': hit %zu is %s (%.17g) on A, %s (%.17g) on B",
						 qtext, i, ha[i].id, ha[i].score, hb[i].id, hb[i].score);
				if (i && ha[i].score > ha[i - 1].score)
					fail_msg("query '%s': scores rise at %zu", qtext, i);
			}
		}
		if (walk && mq.sort == ES_SORT_RELEVANCE) {
			/* Every match exactly once: compare as sets. */
			static char seen[NDOCS + 1000];
			memset(seen, 0, sizeof seen);
			for (size_t i = 0; i < nm; i++) {
				int idx = atoi(strchr(ha[i].id, '-') + 1);
				if (seen[idx]++)
					fail_msg("query '%s': %s twice", qtext, ha[i].id);
			}
			for (size_t i = 0; i < nm; i++)
				if (!seen[atoi(strchr(match[i]->id, '-') + 1)])
					fail_msg("query '%s': %s missing", qtext, match[i]->id);
		}
	}
	/* The generator must reach the interesting cases. */
	print_message("%zu queries with matches, %zu corrected, %zu walked page by page\n", nonempty,
		      typo_fixed, walked);
	assert_true(qi >= 200);
	assert_true(nonempty > (size_t)qi / 3);
	assert_true(typo_fixed > (size_t)qi / 20);
	assert_true(walked > (size_t)qi / 2);
}

static void test_suggest(void **state)
{
	(void)state;
	for (int qi = 0; qi < 400; qi++) {
		const mdoc *d;
		do
			d = &docs[below((uint32_t)ndocs)];
		while (!d->live || d->nttok == 0);
		char prefix[100] = "";
		int w0 = (int)below((uint32_t)d->nttok);
		bool two = d->nttok > 1 && below(3) == 0;
		const char *last = vocab[d->ttoks[two ? (w0 + 1) % d->nttok : w0]];
		if (two) {
			strcat(prefix, vocab[d->ttoks[w0]]);
			strcat(prefix, " ");
		}
		size_t cut = 1 + below((uint32_t)strlen(last));
		strncat(prefix, last, cut);
		size_t limit = 1 + below(10);
		es_suggest_result sa, sb;
		assert_int_equal(es_suggest(ia, prefix, limit, &sa), ES_OK);
		assert_int_equal(es_suggest(ib, prefix, limit, &sb), ES_OK);
		assert_int_equal(sa.count, sb.count);
		for (size_t i = 0; i < sa.count; i++) {
			assert_string_equal(sa.items[i].product_id, sb.items[i].product_id);
			assert_string_equal(sa.items[i].title, sb.items[i].title);
		}
		/* Distinct titles of matching products, as many as there are up
		 * to the limit. */
		char lastw[48];
		strncpy(lastw, last, cut);
		lastw[cut] = '\0';
		int first = two ? d->ttoks[w0] : -1;
		static char titles[NDOCS + 1000][160];
		size_t nt = 0;
		for (int i = 0; i < ndocs && nt <= limit; i++) {
			const mdoc *m = &docs[i];
			if (!m->live)
				continue;
			bool hasfirst = first < 0, haslast = false;
			for (int k = 0; k < m->nttok; k++) {
				hasfirst |= m->ttoks[k] == first;
				haslast |= strncmp(vocab[m->ttoks[k]], lastw, cut) == 0;
			}
			if (!hasfirst || !haslast)
				continue;
			bool dup = false;
			for (size_t j = 0; j < nt && !dup; j++)
				dup = strcmp(titles[j], m->title) == 0;
			if (!dup)
				strcpy(titles[nt++], m->title);
		}
		assert_int_equal(sa.count, nt < limit ? nt : limit);
		for (size_t i = 0; i < sa.count; i++) {
			bool found = false;
			for (int k = 0; k < ndocs && !found; k++)
				found = docs[k].live && strcmp(docs[k].id, sa.items[i].product_id) == 0 &&
					strcmp(docs[k].title, sa.items[i].title) == 0;
			assert_true(found);
		}
		es_suggest_result_free(&sa);
		es_suggest_result_free(&sb);
	}
}

static int teardown(void **state)
{
	(void)state;
	es_destroy(ia);
	es_destroy(ib);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(load),
		cmocka_unit_test(test_queries),
		cmocka_unit_test(test_suggest),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
