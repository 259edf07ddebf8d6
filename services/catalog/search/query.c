/* es_search: words -> term variants -> match bitmap -> filters -> top-k
 * (early stop on the static-score order) -> cursor, with facets from
 * facets.c. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CURSOR_MAGIC 0xE5
#define CURSOR_VERSION 1

typedef struct {
	uint32_t term;
	float pen;
} variant;

typedef struct {
	char word[ES_MAX_TOKEN_BYTES + 1];
	size_t len;
	variant *vars; /* ascending term id */
	size_t nvars;
	roaring_bitmap_t *bm; /* union of the variants' documents */
	bool owned;
	double idf, ub;
	size_t pos; /* as typed: the cursor keeps idf in this order */
} qterm;

typedef struct {
	qterm t[ES_MAX_QUERY_TERMS];
	size_t n;
} qwords;

static bool add_word(const char *w, size_t n, void *arg)
{
	qwords *q = arg;
	if (q->n == ES_MAX_QUERY_TERMS)
		return false;
	qterm *t = &q->t[q->n];
	memset(t, 0, sizeof *t);
	memcpy(t->word, w, n);
	t->len = n;
	t->pos = q->n++;
	return true;
}

/* ---- cursor --------------------------------------------------------- */

typedef struct {
	double key;
	char pid[ES_MAX_ID_BYTES + 1];
	uint32_t nidf;
	float idf[ES_MAX_QUERY_TERMS];
} cursor_t;

static void h64(uint64_t *h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= 1099511628211ull;
	}
}

static void h64s(uint64_t *h, const char *s)
{
	h64(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

/* What a cursor must agree with: everything deciding the match set and the
 * order, not the page size. */
static uint64_t fingerprint(const es_query *q, const qwords *w)
{
	uint64_t h = 14695981039346656037ull;
	uint32_t n = (uint32_t)w->n;
	h64(&h, &n, sizeof n);
	for (size_t i = 0; i < w->n; i++)
		h64(&h, w->t[i].word, w->t[i].len + 1);
	uint8_t flags[3] = {q->exact_last, q->in_stock_only, (uint8_t)q->sort};
	h64(&h, flags, sizeof flags);
	for (size_t i = 0; i < q->category_count; i++)
		h64s(&h, q->category_ids[i]);
	h64(&h, "|", 1);
	for (size_t i = 0; i < q->store_count; i++)
		h64s(&h, q->store_ids[i]);
	h64(&h, "|", 1);
	int64_t pr[2] = {q->has_min_price ? q->min_price : INT64_MIN,
	                 q->has_max_price ? q->max_price : INT64_MAX};
	h64(&h, pr, sizeof pr);
	for (size_t i = 0; i < q->attr_filter_count; i++) {
		h64s(&h, q->attr_filters[i].key);
		for (size_t j = 0; j < q->attr_filters[i].value_count; j++)
			h64s(&h, q->attr_filters[i].values[j]);
		h64(&h, "|", 1);
	}
	return h;
}

static size_t cursor_encode(uint8_t *out, es_sort sort, uint64_t fp, const cursor_t *c)
{
	size_t n = 0, pl = strlen(c->pid);
	out[n++] = CURSOR_MAGIC;
	out[n++] = CURSOR_VERSION;
	out[n++] = (uint8_t)sort;
	out[n++] = (uint8_t)c->nidf;
	memcpy(out + n, &fp, 8);
	n += 8;
	memcpy(out + n, &c->key, 8);
	n += 8;
	memcpy(out + n, c->idf, c->nidf * sizeof(float));
	n += c->nidf * sizeof(float);
	out[n++] = (uint8_t)pl;
	memcpy(out + n, c->pid, pl);
	return n + pl;
}

#define CURSOR_MAX (4 + 8 + 8 + ES_MAX_QUERY_TERMS * 4 + 1 + ES_MAX_ID_BYTES)

static int cursor_decode(const uint8_t *b, size_t len, es_sort sort, uint64_t fp, size_t nwords,
                         cursor_t *c)
{
	if (len < 21 || len > CURSOR_MAX || b[0] != CURSOR_MAGIC || b[1] != CURSOR_VERSION)
		return ES_ECURSOR;
	if (b[2] != (uint8_t)sort)
		return ES_ECURSOR;
	c->nidf = b[3];
	if (c->nidf != (sort == ES_SORT_RELEVANCE ? nwords : 0))
		return ES_ECURSOR;
	uint64_t cfp;
	memcpy(&cfp, b + 4, 8);
	if (cfp != fp)
		return ES_ECURSOR;
	memcpy(&c->key, b + 12, 8);
	if (!isfinite(c->key))
		return ES_ECURSOR;
	size_t n = 20;
	if (len < n + c->nidf * 4 + 1)
		return ES_ECURSOR;
	memcpy(c->idf, b + n, c->nidf * 4);
	for (uint32_t i = 0; i < c->nidf; i++)
		if (!isfinite(c->idf[i]) || c->idf[i] < 0)
			return ES_ECURSOR;
	n += c->nidf * 4;
	size_t pl = b[n++];
	if (pl == 0 || pl > ES_MAX_ID_BYTES || n + pl != len)
		return ES_ECURSOR;
	memcpy(c->pid, b + n, pl);
	c->pid[pl] = '\0';
	if (strlen(c->pid) != pl)
		return ES_ECURSOR;
	return ES_OK;
}

/* ---- ordering ------------------------------------------------------- */

typedef struct {
	double key;
	uint32_t id;
} cand;

typedef struct {
	const es_index *ix;
	bool desc;
	cand *h; /* max-heap on "comes later": the root is the first to drop */
	size_t n, cap;
} topk;

static inline bool before(const es_index *ix, bool desc, double ka, const char *pa, double kb,
                          const char *pb)
{
	if (ka != kb)
		return desc ? ka > kb : ka < kb;
	return strcmp(pa, pb) < 0;
}

static inline bool cand_later(const topk *t, const cand *a, const cand *b)
{
	return before(t->ix, t->desc, b->key, t->ix->docs[b->id].pid, a->key,
	              t->ix->docs[a->id].pid);
}

static void heap_push(topk *t, cand c)
{
	if (t->n < t->cap) {
		size_t i = t->n++;
		t->h[i] = c;
		while (i > 0) {
			size_t p = (i - 1) / 2;
			if (!cand_later(t, &t->h[i], &t->h[p]))
				break;
			cand x = t->h[i];
			t->h[i] = t->h[p];
			t->h[p] = x;
			i = p;
		}
		return;
	}
	if (!cand_later(t, &t->h[0], &c))
		return;
	t->h[0] = c;
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < t->n && cand_later(t, &t->h[l], &t->h[m]))
			m = l;
		if (r < t->n && cand_later(t, &t->h[r], &t->h[m]))
			m = r;
		if (m == i)
			break;
		cand x = t->h[i];
		t->h[i] = t->h[m];
		t->h[m] = x;
		i = m;
	}
}

/* ---- matching ------------------------------------------------------- */

typedef struct {
	const lexicon *lx;
	uint32_t exact;
	uint32_t *ids;
	size_t n, cap;
	bool oom;
} prefix_ctx;

static void prefix_collect(uint32_t t, void *arg)
{
	prefix_ctx *p = arg;
	if (t == p->exact || roaring_bitmap_is_empty(p->lx->terms[t].docs))
		return;
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 64;
		uint32_t *ni = realloc(p->ids, nc * sizeof *ni);
		if (!ni) {
			p->oom = true;
			return;
		}
		p->ids = ni;
		p->cap = nc;
	}
	p->ids[p->n++] = t;
}

static int by_df(const void *a, const void *b, void *arg)
{
	const lexicon *df_lx = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	uint64_t dx = lex_df(df_lx, x), dy = lex_df(df_lx, y);
	if (dx != dy)
		return dx > dy ? -1 : 1;
	return strcmp(df_lx->terms[x].s, df_lx->terms[y].s);
}

static int var_cmp(const void *a, const void *b)
{
	uint32_t x = ((const variant *)a)->term, y = ((const variant *)b)->term;
	return (x > y) - (x < y);
}

/* Resolves every word into its variants. Returns false when some word has
 * none (nothing can match), ES_ENOMEM through *rc. */
static bool resolve(const es_index *ix, const es_query *q, qwords *w, arena *tmp, es_result *r,
                    arena *ra, int *rc)
{
	const es_config *c = &ix->cfg;
	const lexicon *lx = &ix->lex;
	char **corr = NULL;
	if (w->n) {
		corr = arena_alloc(ra, 2 * w->n * sizeof *corr);
		if (!corr)
			goto oom;
	}
	r->corrections = corr;
	bool all = true;
	for (size_t i = 0; i < w->n; i++) {
		qterm *t = &w->t[i];
		bool last = i + 1 == w->n && !q->exact_last;
		uint32_t exact = lex_find(lx, t->word, t->len);
		uint64_t edf = exact != ES_NONE ? lex_df(lx, exact) : 0;
		prefix_ctx pc = {.lx = lx, .exact = exact};
		if (last && t->len >= c->prefix_min_len) {
			lex_prefix(lx, t->word, t->len, prefix_collect, &pc);
			if (pc.oom) {
				free(pc.ids);
				goto oom;
			}
			if (c->max_prefix_terms && pc.n > c->max_prefix_terms) {
				qsort_r(pc.ids, pc.n, sizeof *pc.ids, by_df, (void *)lx);
				pc.n = c->max_prefix_terms;
			}
		}
		uint32_t fix[16];
		size_t nfix = 0;
		int dist = 0;
		if ((edf == 0 && pc.n == 0) || (edf > 0 && edf <= c->rare_df)) {
			size_t maxc = c->max_corrections < 16 ? c->max_corrections : 16;
			nfix = lex_correct(lx, t->word, t->len, fix, maxc, &dist);
		}
		t->nvars = (edf > 0) + pc.n + nfix;
		t->vars = arena_alloc(tmp, (t->nvars ? t->nvars : 1) * sizeof *t->vars);
		if (!t->vars) {
			free(pc.ids);
			goto oom;
		}
		size_t k = 0;
		if (edf > 0)
			t->vars[k++] = (variant){exact, 1.0f};
		for (size_t j = 0; j < pc.n; j++)
			t->vars[k++] = (variant){pc.ids[j], c->prefix_penalty};
		free(pc.ids);
		for (size_t j = 0; j < nfix; j++) {
			bool dup = false;
			for (size_t m = 0; m < k; m++)
				dup |= t->vars[m].term == fix[j];
			if (!dup)
				t->vars[k++] = (variant){fix[j], c->typo_penalty};
		}
		t->nvars = k;
		if (nfix) {
			corr[2 * r->correction_count] = arena_strdup(ra, t->word);
			corr[2 * r->correction_count + 1] = arena_strdup(ra, lx->terms[fix[0]].s);
			if (!corr[2 * r->correction_count] || !corr[2 * r->correction_count + 1])
				goto oom;
			r->correction_count++;
		}
		if (k == 0) {
			all = false;
			continue;
		}
		if (k > 1)
			qsort(t->vars, k, sizeof *t->vars, var_cmp);
		if (k == 1) {
			t->bm = lx->terms[t->vars[0].term].docs;
			t->owned = false;
		} else {
			const roaring_bitmap_t **bms = arena_alloc(tmp, k * sizeof *bms);
			if (!bms)
				goto oom;
			for (size_t j = 0; j < k; j++)
				bms[j] = lx->terms[t->vars[j].term].docs;
			t->bm = roaring_bitmap_or_many(k, bms);
			if (!t->bm)
				goto oom;
			t->owned = true;
		}
	}
	return all;
oom:
	*rc = ES_ENOMEM;
	return false;
}

roaring_bitmap_t *es_bcol_range(const es_index *ix, const bcol *c, int64_t lo, int64_t hi,
                                bool outside, const roaring_bitmap_t *within,
                                int64_t (*bucket_of)(int64_t),
                                int64_t (*value_of)(const doc_t *))
{
	int64_t blo = bucket_of(lo), bhi = bucket_of(hi);
	const roaring_bitmap_t **whole = malloc((c->n ? c->n : 1) * sizeof *whole);
	roaring_bitmap_t *edge = roaring_bitmap_create();
	uint32_t nwhole = 0, buf[256];
	if (!whole || !edge) {
		free(whole);
		bm_free(edge);
		return NULL;
	}
	for (uint32_t i = 0; i < c->n; i++) {
		int64_t k = c->b[i].key;
		if (k != blo && k != bhi) {
			/* Wholly in the range, or wholly out of it. */
			if ((k > blo && k < bhi) != outside)
				whole[nwhole++] = c->b[i].bm;
			continue;
		}
		/* An edge bucket: its documents one by one, only those that
		 * can matter (within), their records fetched a batch ahead. */
		roaring_bitmap_t *x = within ? roaring_bitmap_and(c->b[i].bm, within) : NULL;
		if (within && !x) {
			free(whole);
			bm_free(edge);
			return NULL;
		}
		roaring_uint32_iterator_t it;
		roaring_init_iterator(x ? x : c->b[i].bm, &it);
		uint32_t got;
		while ((got = roaring_read_uint32_iterator(&it, buf, 256)) > 0) {
			for (uint32_t j = 0; j < got; j++)
				__builtin_prefetch(&ix->docs[buf[j]]);
			for (uint32_t j = 0; j < got; j++) {
				int64_t v = value_of(&ix->docs[buf[j]]);
				if ((v >= lo && v <= hi) != outside)
					roaring_bitmap_add(edge, buf[j]);
			}
		}
		bm_free(x);
	}
	/* One union of every whole bucket: far cheaper than as many ORs into
	 * a growing bitmap. */
	roaring_bitmap_t *out = nwhole ? roaring_bitmap_or_many(nwhole, whole) : NULL;
	if (out)
		roaring_bitmap_or_inplace(out, edge);
	free(whole);
	if (!nwhole)
		return edge;
	bm_free(edge);
	return out;
}

uint32_t es_bcol_inner(const bcol *c, int64_t lo, int64_t hi, int64_t (*bucket_of)(int64_t))
{
	int64_t blo = bucket_of(lo), bhi = bucket_of(hi);
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->n; i++)
		n += c->b[i].key > blo && c->b[i].key < bhi;
	return n;
}

static int64_t price_of(const doc_t *d)
{
	return d->price;
}

/* ANDs f into *m, which becomes owned. NULL f = nothing matches. */
static bool and_into(roaring_bitmap_t **m, bool *owned, const roaring_bitmap_t *f)
{
	if (!f) {
		if (*owned)
			roaring_bitmap_clear(*m);
		else {
			*m = roaring_bitmap_create();
			*owned = true;
		}
		return *m != NULL;
	}
	if (*owned) {
		roaring_bitmap_and_inplace(*m, f);
		return true;
	}
	*m = roaring_bitmap_and(*m, f);
	*owned = true;
	return *m != NULL;
}

static roaring_bitmap_t *or_sets(const es_index *ix, const strmap *map, const named_set *sets,
                                 const char *const *ids, size_t n)
{
	roaring_bitmap_t *u = roaring_bitmap_create();
	if (!u)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t s = strmap_get(map, ids[i], strlen(ids[i]));
		if (s != ES_NONE)
			roaring_bitmap_or_inplace(u, sets[s].bm);
	}
	return u;
}

static int validate_query(const es_query *q)
{
	if (!q || q->page_size < 1 || q->page_size > ES_MAX_PAGE_SIZE)
		return ES_EINVAL;
	if ((unsigned)q->sort > ES_SORT_RATING)
		return ES_EINVAL;
	if ((q->category_count && !q->category_ids) || (q->store_count && !q->store_ids) ||
	    (q->attr_filter_count && !q->attr_filters) || (q->cursor_len && !q->cursor))
		return ES_EINVAL;
	for (size_t i = 0; i < q->category_count; i++)
		if (!q->category_ids[i])
			return ES_EINVAL;
	for (size_t i = 0; i < q->store_count; i++)
		if (!q->store_ids[i])
			return ES_EINVAL;
	for (size_t i = 0; i < q->attr_filter_count; i++) {
		const es_attr_filter *f = &q->attr_filters[i];
		if (!f->key || (f->value_count && !f->values))
			return ES_EINVAL;
		for (size_t j = 0; j < f->value_count; j++)
			if (!f->values[j])
				return ES_EINVAL;
		for (size_t j = 0; j < i; j++)
			if (strcmp(f->key, q->attr_filters[j].key) == 0)
				return ES_EINVAL;
	}
	if (q->has_min_price && q->has_max_price && q->min_price > q->max_price)
		return ES_EINVAL;
	if (q->price_bound_count > 32 || (q->price_bound_count && !q->price_bounds))
		return ES_EINVAL;
	for (size_t i = 1; i < q->price_bound_count; i++)
		if (q->price_bounds[i] <= q->price_bounds[i - 1])
			return ES_EINVAL;
	return ES_OK;
}

/* ---- scoring -------------------------------------------------------- */

static double text_score(const es_index *ix, const doc_t *d, const qwords *w)
{
	double s = 0.0;
	for (size_t i = 0; i < w->n; i++) {
		const qterm *t = &w->t[i];
		float best = 0.0f;
		size_t a = 0, b = 0;
		/* Both ascending: one merge pass finds every variant the doc has. */
		while (a < d->nterms && b < t->nvars) {
			uint32_t x = d->terms[a], y = t->vars[b].term;
			if (x < y)
				a++;
			else if (x > y)
				b++;
			else {
				float v = (float)d->imp[a] * ES_IMP_SCALE * t->vars[b].pen;
				if (v > best)
					best = v;
				a++;
				b++;
			}
		}
		s += t->idf * best;
	}
	(void)ix;
	return s;
}

static void rank_relevance(const es_index *ix, const roaring_bitmap_t *m, const qwords *w,
                           const cursor_t *cur, topk *tk)
{
	double ubsum = 0.0;
	for (size_t i = 0; i < w->n; i++)
		ubsum += w->t[i].ub;
	const double sw = ix->cfg.static_weight;
	roaring_uint32_iterator_t it;
	roaring_init_iterator(m, &it);
	uint32_t buf[256], got;
	bool in_tail = false;
	while ((got = roaring_read_uint32_iterator(&it, buf, 256)) > 0) {
		for (uint32_t j = 0; j < got; j++) {
			uint32_t id = buf[j];
			const doc_t *d = &ix->docs[id];
			if (!in_tail && id < ix->sorted_upto && tk->n == tk->cap) {
				/* Ids below sorted_upto come in falling static score; with the best
				 * text score any word could add, this one and all after it in the
				 * ordered part still cannot beat the page's last entry. */
				double bound = ubsum + sw * (double)d->stat;
				if (bound < tk->h[0].key) {
					in_tail = true;
					if (ix->sorted_upto >= ix->ndocs)
						return;
					roaring_init_iterator(m, &it);
					if (!roaring_move_uint32_iterator_equalorlarger(
					            &it, ix->sorted_upto))
						return;
					goto refill;
				}
			}
			double s = text_score(ix, d, w) + sw * (double)d->stat;
			if (cur && !before(ix, true, cur->key, cur->pid, s, d->pid))
				continue;
			heap_push(tk, (cand){s, id});
		}
		continue;
	refill:;
	}
}

static void rank_sorted(const es_index *ix, const roaring_bitmap_t *m, uint64_t total, es_sort sort,
                        const cursor_t *cur, topk *tk)
{
	const bcol *col = sort == ES_SORT_NEWEST   ? &ix->created
	                  : sort == ES_SORT_RATING ? &ix->rating
	                                           : &ix->price;
	bool desc = sort != ES_SORT_PRICE_ASC;
	uint32_t buf[256], got;
	if (total <= 4096 || col->n == 0) {
		/* Few matches: one pass beats a walk over every bucket. */
		roaring_uint32_iterator_t it;
		roaring_init_iterator(m, &it);
		while ((got = roaring_read_uint32_iterator(&it, buf, 256)) > 0)
			for (uint32_t j = 0; j < got; j++) {
				const doc_t *d = &ix->docs[buf[j]];
				double k = es_doc_sort_key(d, sort);
				if (cur && !before(ix, desc, cur->key, cur->pid, k, d->pid))
					continue;
				heap_push(tk, (cand){k, buf[j]});
			}
		return;
	}
	int64_t start = 0;
	if (cur)
		start = sort == ES_SORT_NEWEST   ? es_created_key((int64_t)cur->key)
		        : sort == ES_SORT_RATING ? es_rating_key(cur->key)
		                                 : es_price_key((int64_t)cur->key);
	for (uint32_t s = 0; s < col->n; s++) {
		const bucket *b = &col->b[desc ? col->n - 1 - s : s];
		if (cur && (desc ? b->key > start : b->key < start))
			continue;
		roaring_bitmap_t *x = roaring_bitmap_and(m, b->bm);
		if (!x)
			return;
		roaring_uint32_iterator_t it;
		roaring_init_iterator(x, &it);
		while ((got = roaring_read_uint32_iterator(&it, buf, 256)) > 0)
			for (uint32_t j = 0; j < got; j++) {
				const doc_t *d = &ix->docs[buf[j]];
				double k = es_doc_sort_key(d, sort);
				if (cur && !before(ix, desc, cur->key, cur->pid, k, d->pid))
					continue;
				heap_push(tk, (cand){k, buf[j]});
			}
		bm_free(x);
		/* Later buckets only hold later keys. */
		if (tk->n == tk->cap)
			return;
	}
}

/* ---- es_search ------------------------------------------------------ */

void es_result_free(es_result *r)
{
	if (!r)
		return;
	if (r->mem_) {
		arena_free(r->mem_);
		free(r->mem_);
	}
	memset(r, 0, sizeof *r);
}

int es_search(es_index *ix, const es_query *q, es_result *r)
{
	memset(r, 0, sizeof *r);
	int rc = validate_query(q);
	if (rc != ES_OK)
		return rc;
	arena *ra = calloc(1, sizeof *ra);
	if (!ra)
		return ES_ENOMEM;
	r->mem_ = ra;
	arena tmp = {0};
	qwords w = {.n = 0};
	es_tokenize(q->text, add_word, &w);
	uint64_t fp = fingerprint(q, &w);
	cursor_t cur;
	bool has_cur = q->cursor_len > 0;
	if (has_cur &&
	    (rc = cursor_decode(q->cursor, q->cursor_len, q->sort, fp, w.n, &cur)) != ES_OK) {
		es_result_free(r);
		return rc;
	}

	pthread_rwlock_rdlock(&ix->lock);
	roaring_bitmap_t *m = NULL, *f = NULL;
	bool owned = false;
	topk tk = {.ix = ix, .desc = q->sort != ES_SORT_PRICE_ASC};
	bool any = resolve(ix, q, &w, &tmp, r, ra, &rc);
	if (rc != ES_OK)
		goto out;
	if (!any)
		goto facets; /* some word matches nothing: empty result */

	/* Rarest word first: every AND after it is cheap. */
	for (size_t i = 1; i < w.n; i++)
		for (size_t j = i; j > 0 && roaring_bitmap_get_cardinality(w.t[j].bm) <
		                                    roaring_bitmap_get_cardinality(w.t[j - 1].bm);
		     j--) {
			qterm x = w.t[j];
			w.t[j] = w.t[j - 1];
			w.t[j - 1] = x;
		}
	if (w.n == 0) {
		m = ix->live;
	} else {
		m = w.t[0].bm;
		for (size_t i = 1; i < w.n; i++)
			if (!and_into(&m, &owned, w.t[i].bm))
				goto oom;
	}
	if (q->category_count) {
		f = or_sets(ix, &ix->cat_map, ix->cats, q->category_ids, q->category_count);
		if (!f || !and_into(&m, &owned, f))
			goto oom;
		bm_free(f);
		f = NULL;
	}
	if (q->store_count) {
		f = or_sets(ix, &ix->store_map, ix->stores, q->store_ids, q->store_count);
		if (!f || !and_into(&m, &owned, f))
			goto oom;
		bm_free(f);
		f = NULL;
	}
	for (size_t i = 0; i < q->attr_filter_count; i++) {
		const es_attr_filter *af = &q->attr_filters[i];
		f = roaring_bitmap_create();
		if (!f)
			goto oom;
		uint32_t key = strmap_get(&ix->akey_map, af->key, strlen(af->key));
		if (key != ES_NONE)
			for (size_t j = 0; j < af->value_count; j++) {
				size_t kl = strlen(af->key), vl = strlen(af->values[j]);
				char *buf = arena_alloc(&tmp, kl + vl + 2);
				if (!buf)
					goto oom;
				memcpy(buf, af->key, kl);
				buf[kl] = '\x1f';
				memcpy(buf + kl + 1, af->values[j], vl);
				uint32_t v = strmap_get(&ix->aval_map, buf, kl + 1 + vl);
				if (v != ES_NONE)
					roaring_bitmap_or_inplace(f, ix->avals[v].bm);
			}
		if (!and_into(&m, &owned, f))
			goto oom;
		bm_free(f);
		f = NULL;
	}
	if (q->in_stock_only && !and_into(&m, &owned, ix->instock))
		goto oom;
	if (q->has_min_price || q->has_max_price) {
		/* Last, on the smallest set: a few matches are checked one by one,
		 * many are intersected with the range's buckets. */
		int64_t lo = q->has_min_price ? q->min_price : INT64_MIN;
		int64_t hi = q->has_max_price ? q->max_price : INT64_MAX;
		if (roaring_bitmap_get_cardinality(m) * 16 <= ix->live_count) {
			f = roaring_bitmap_create();
			if (!f)
				goto oom;
			roaring_uint32_iterator_t it;
			roaring_init_iterator(m, &it);
			uint32_t buf[256], got;
			while ((got = roaring_read_uint32_iterator(&it, buf, 256)) > 0)
				for (uint32_t j = 0; j < got; j++) {
					int64_t p = ix->frecs[buf[j]].price;
					if (p >= lo && p <= hi)
						roaring_bitmap_add(f, buf[j]);
				}
			if (owned)
				bm_free(m);
			m = f;
			owned = true;
			f = NULL;
		} else if (es_bcol_inner(&ix->price, lo, hi, es_price_key) * 2 > ix->price.n) {
			/* A range holding most prices (a floor, say): take away
			 * the few buckets outside it rather than unite those in it. */
			f = es_bcol_range(ix, &ix->price, lo, hi, true, m, es_price_key,
			                  price_of);
			if (!f)
				goto oom;
			if (owned) {
				roaring_bitmap_andnot_inplace(m, f);
			} else {
				roaring_bitmap_t *x = roaring_bitmap_andnot(m, f);
				if (!x)
					goto oom;
				m = x;
				owned = true;
			}
			bm_free(f);
			f = NULL;
		} else {
			f = es_bcol_range(ix, &ix->price, lo, hi, false, m, es_price_key,
			                  price_of);
			if (!f || !and_into(&m, &owned, f))
				goto oom;
			bm_free(f);
			f = NULL;
		}
	}
	r->total = roaring_bitmap_get_cardinality(m);

	/* idf from the live collection, or the first page's when paging on, so
	 * a product keeps its score from page to page. */
	double N = (double)ix->live_count;
	for (size_t i = 0; i < w.n; i++) {
		qterm *t = &w.t[i];
		if (has_cur && q->sort == ES_SORT_RELEVANCE) {
			t->idf = cur.idf[t->pos];
		} else {
			double df = (double)roaring_bitmap_get_cardinality(t->bm);
			t->idf = (float)log(1.0 + (N - df + 0.5) / (df + 0.5));
		}
	}
	for (size_t i = 0; i < w.n; i++) {
		qterm *t = &w.t[i];
		float mx = 0.0f;
		for (size_t j = 0; j < t->nvars; j++) {
			float v = ix->lex.terms[t->vars[j].term].max_impact * t->vars[j].pen;
			if (v > mx)
				mx = v;
		}
		t->ub = t->idf * mx;
	}

	tk.cap = q->page_size + 1;
	tk.h = arena_alloc(&tmp, tk.cap * sizeof *tk.h);
	if (!tk.h)
		goto oom;
	if (r->total > 0) {
		if (q->sort == ES_SORT_RELEVANCE)
			rank_relevance(ix, m, &w, has_cur ? &cur : NULL, &tk);
		else
			rank_sorted(ix, m, r->total, q->sort, has_cur ? &cur : NULL, &tk);
	}
	{
		/* Popping the heap yields the page from its end. */
		size_t n = tk.n;
		cand *out = arena_alloc(&tmp, (n ? n : 1) * sizeof *out);
		if (!out)
			goto oom;
		while (tk.n > 0) {
			out[tk.n - 1] = tk.h[0];
			tk.h[0] = tk.h[--tk.n];
			size_t i = 0;
			for (;;) {
				size_t l = 2 * i + 1, rr = l + 1, mm = i;
				if (l < tk.n && cand_later(&tk, &tk.h[l], &tk.h[mm]))
					mm = l;
				if (rr < tk.n && cand_later(&tk, &tk.h[rr], &tk.h[mm]))
					mm = rr;
				if (mm == i)
					break;
				cand x = tk.h[i];
				tk.h[i] = tk.h[mm];
				tk.h[mm] = x;
				i = mm;
			}
		}
		size_t page = n > q->page_size ? q->page_size : n;
		r->hits = arena_alloc(ra, (page ? page : 1) * sizeof *r->hits);
		if (!r->hits)
			goto oom;
		for (size_t i = 0; i < page; i++) {
			const doc_t *d = &ix->docs[out[i].id];
			r->hits[i].product_id = arena_strdup(ra, d->pid);
			if (!r->hits[i].product_id)
				goto oom;
			r->hits[i].score =
			        q->sort == ES_SORT_RELEVANCE ? out[i].key : (double)d->stat;
		}
		r->hit_count = page;
		if (n > q->page_size) {
			cursor_t nc = {.key = out[page - 1].key};
			strcpy(nc.pid, ix->docs[out[page - 1].id].pid);
			if (q->sort == ES_SORT_RELEVANCE) {
				nc.nidf = (uint32_t)w.n;
				for (size_t i = 0; i < w.n; i++)
					nc.idf[w.t[i].pos] = (float)w.t[i].idf;
			}
			r->next_cursor = arena_alloc(ra, CURSOR_MAX);
			if (!r->next_cursor)
				goto oom;
			r->next_cursor_len = cursor_encode(r->next_cursor, q->sort, fp, &nc);
		}
	}

facets:
	if (q->facets) {
		roaring_bitmap_t *empty = NULL;
		if (!m) {
			empty = roaring_bitmap_create();
			if (!empty)
				goto oom;
		}
		/* The cache key: what decides the match set (not the sort) and
		 * how facets are asked. */
		es_query fq = *q;
		fq.sort = ES_SORT_RELEVANCE;
		uint64_t key = fingerprint(&fq, &w);
		h64(&key, q->price_bounds ? (const void *)q->price_bounds : "",
		    q->price_bound_count * sizeof *q->price_bounds);
		h64(&key, &q->facet_values_per_key, sizeof q->facet_values_per_key);
		bool hit = false;
		if (ix->cache) {
			pthread_mutex_lock(&ix->cache_lock);
			for (uint32_t i = 0; i < ix->cfg.facet_cache_entries && !hit; i++) {
				fcache_entry *e = &ix->cache[i];
				if (e->used && e->key == key && e->gen == ix->gen) {
					rc = es_copy_facets(r, &e->facets, ra);
					hit = true;
				}
			}
			pthread_mutex_unlock(&ix->cache_lock);
		}
		if (!hit) {
			/* One word read as one lexicon word: the match set is that
			 * word's products (whose counts are kept), or those the
			 * filters keep of them. */
			const tfacets *fc = NULL;
			const roaring_bitmap_t *word = NULL;
			if (m && w.n == 1 && w.t[0].nvars == 1) {
				const term_t *tm = &ix->lex.terms[w.t[0].vars[0].term];
				fc = tm->fc;
				if (q->category_count || q->store_count || q->has_min_price ||
				    q->has_max_price || q->attr_filter_count || q->in_stock_only)
					word = tm->docs;
			}
			rc = es_compute_facets(ix, q, m ? m : empty, fc, word, r, ra);
			if (rc == ES_OK && ix->cache) {
				pthread_mutex_lock(&ix->cache_lock);
				fcache_entry *e = &ix->cache[ix->cache_next];
				ix->cache_next = (ix->cache_next + 1) % ix->cfg.facet_cache_entries;
				arena_free(&e->mem);
				memset(&e->facets, 0, sizeof e->facets);
				e->used = es_copy_facets(&e->facets, r, &e->mem) == ES_OK;
				e->key = key;
				e->gen = ix->gen;
				pthread_mutex_unlock(&ix->cache_lock);
			}
		}
		bm_free(empty);
	}
	goto out;
oom:
	rc = ES_ENOMEM;
out:
	pthread_rwlock_unlock(&ix->lock);
	bm_free(f);
	if (owned)
		bm_free(m);
	for (size_t i = 0; i < w.n; i++)
		if (w.t[i].owned)
			bm_free(w.t[i].bm);
	arena_free(&tmp);
	if (rc != ES_OK)
		es_result_free(r);
	return rc;
}
