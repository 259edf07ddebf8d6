/* The index's own vocabulary: word -> term, prefix ranges for type-ahead,
 * and typo correction by precomputed deletes (SymSpell): a query word and a
 * lexicon word within edit distance d share a string obtained by deleting
 * at most d bytes from each, so looking up the query word's deletes among
 * the lexicon's finds every candidate, which a real distance then checks. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int lex_init(lexicon *lx)
{
	memset(lx, 0, sizeof *lx);
	return ES_OK;
}

void lex_free(lexicon *lx)
{
	for (uint32_t i = 0; i < lx->nterms; i++) {
		bm_free(lx->terms[i].docs);
		bm_free(lx->terms[i].title);
		es_fc_free(lx->terms[i].fc);
	}
	for (uint32_t i = 0; i < lx->ndlists; i++)
		free(lx->dlists[i].ids);
	free(lx->dlists);
	free(lx->terms);
	free(lx->sorted);
	strmap_free(&lx->map);
	strmap_free(&lx->dels);
	memset(lx, 0, sizeof *lx);
}

int es_max_typo_distance(size_t len)
{
	return len >= 8 ? 2 : len >= 4 ? 1 : 0;
}

static int term_cmp_str(const lexicon *lx, uint32_t a, const char *s, size_t n)
{
	const term_t *t = &lx->terms[a];
	size_t m = t->len < n ? t->len : n;
	int c = memcmp(t->s, s, m);
	if (c)
		return c;
	return (t->len > n) - (t->len < n);
}

static int pending_cmp(const void *a, const void *b, void *arg)
{
	const lexicon *sort_lx = arg;
	const term_t *x = &sort_lx->terms[*(const uint32_t *)a];
	return term_cmp_str(sort_lx, *(const uint32_t *)b, x->s, x->len) * -1;
}

/* Merges the pending words into the sorted array (writer only). */
static bool merge_pending(lexicon *lx)
{
	uint32_t *ns = malloc((size_t)(lx->nsorted + lx->npending) * sizeof *ns);
	if (!ns)
		return false;
	if (lx->npending > 1)
		qsort_r(lx->pending, lx->npending, sizeof(uint32_t), pending_cmp, lx);
	uint32_t i = 0, j = 0, k = 0;
	while (i < lx->nsorted && j < lx->npending) {
		const term_t *b = &lx->terms[lx->pending[j]];
		if (term_cmp_str(lx, lx->sorted[i], b->s, b->len) < 0)
			ns[k++] = lx->sorted[i++];
		else
			ns[k++] = lx->pending[j++];
	}
	while (i < lx->nsorted)
		ns[k++] = lx->sorted[i++];
	while (j < lx->npending)
		ns[k++] = lx->pending[j++];
	free(lx->sorted);
	lx->sorted = ns;
	lx->nsorted = k;
	lx->npending = 0;
	return true;
}

static bool add_delete(lexicon *lx, const char *s, size_t n, uint32_t term)
{
	uint32_t li = strmap_get(&lx->dels, s, n);
	if (li == ES_NONE) {
		if (lx->ndlists == lx->dcap) {
			uint32_t nc = lx->dcap ? lx->dcap * 2 : 1024;
			idlist *nl = realloc(lx->dlists, nc * sizeof *nl);
			if (!nl)
				return false;
			lx->dlists = nl;
			lx->dcap = nc;
		}
		li = lx->ndlists;
		if (!strmap_put(&lx->dels, s, n, li))
			return false;
		lx->dlists[li] = (idlist){0};
		lx->ndlists++;
	}
	idlist *l = &lx->dlists[li];
	/* One word yields the same delete several times ("aab"): its deletes are
	 * generated together, so the last entry tells. */
	if (l->n && l->ids[l->n - 1] == term)
		return true;
	if (l->n == l->cap) {
		uint32_t nc = l->cap ? l->cap * 2 : 2;
		uint32_t *ni = realloc(l->ids, nc * sizeof *ni);
		if (!ni)
			return false;
		l->ids = ni;
		l->cap = nc;
	}
	l->ids[l->n++] = term;
	return true;
}

static bool add_deletes(lexicon *lx, const char *s, size_t n, uint32_t term)
{
	if (n < 4)
		return true;
	if (!add_delete(lx, s, n, term))
		return false;
	char buf[ES_MAX_TOKEN_BYTES];
	for (size_t i = 0; i < n; i++) {
		memcpy(buf, s, i);
		memcpy(buf + i, s + i + 1, n - i - 1);
		if (!add_delete(lx, buf, n - 1, term))
			return false;
		if (n >= 6) {
			char buf2[ES_MAX_TOKEN_BYTES];
			for (size_t j = i; j < n - 1; j++) {
				memcpy(buf2, buf, j);
				memcpy(buf2 + j, buf + j + 1, n - 2 - j);
				if (!add_delete(lx, buf2, n - 2, term))
					return false;
			}
		}
	}
	return true;
}

uint32_t lex_intern(lexicon *lx, const char *s, size_t n)
{
	uint32_t t = strmap_get(&lx->map, s, n);
	if (t != ES_NONE)
		return t;
	if (lx->nterms == lx->cap) {
		uint32_t nc = lx->cap ? lx->cap * 2 : 1024;
		term_t *nt = realloc(lx->terms, nc * sizeof *nt);
		if (!nt)
			return ES_NONE;
		lx->terms = nt;
		lx->cap = nc;
	}
	if (lx->npending == sizeof lx->pending / sizeof lx->pending[0] && !merge_pending(lx))
		return ES_NONE;
	t = lx->nterms;
	term_t *tm = &lx->terms[t];
	memset(tm, 0, sizeof *tm);
	tm->docs = roaring_bitmap_create();
	tm->title = roaring_bitmap_create();
	if (!tm->docs || !tm->title)
		goto fail;
	/* A delete list is appended to only here, so a failure half way leaves
	 * harmless extra candidates that the distance check filters out. */
	if (!add_deletes(lx, s, n, t))
		goto fail;
	tm->s = strmap_put(&lx->map, s, n, t);
	if (!tm->s)
		goto fail;
	tm->len = (uint16_t)n;
	lx->pending[lx->npending++] = t;
	lx->nterms++;
	return t;
fail:
	bm_free(tm->docs);
	bm_free(tm->title);
	/* Deletes already pointing at t will point at the next word interned
	 * under that id; the distance check keeps that harmless. */
	return ES_NONE;
}

void lex_prefix(const lexicon *lx, const char *p, size_t n, lex_term_fn fn, void *arg)
{
	uint32_t lo = 0, hi = lx->nsorted;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (term_cmp_str(lx, lx->sorted[mid], p, n) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (uint32_t i = lo; i < lx->nsorted; i++) {
		const term_t *t = &lx->terms[lx->sorted[i]];
		if (t->len < n || memcmp(t->s, p, n) != 0)
			break;
		fn(lx->sorted[i], arg);
	}
	for (uint32_t i = 0; i < lx->npending; i++) {
		const term_t *t = &lx->terms[lx->pending[i]];
		if (t->len >= n && memcmp(t->s, p, n) == 0)
			fn(lx->pending[i], arg);
	}
}

int es_osa_distance(const char *a, size_t an, const char *b, size_t bn, int max)
{
	/* Optimal string alignment (Damerau-Levenshtein without repeated edits of
	 * one substring), three rows, stopping once every cell exceeds max. */
	if ((an > bn ? an - bn : bn - an) > (size_t)max)
		return max + 1;
	int rows[3][ES_MAX_TOKEN_BYTES + 1];
	int *pp = rows[0], *p = rows[1], *c = rows[2];
	for (size_t j = 0; j <= bn; j++)
		p[j] = (int)j;
	for (size_t i = 1; i <= an; i++) {
		c[0] = (int)i;
		int best = c[0];
		for (size_t j = 1; j <= bn; j++) {
			int cost = a[i - 1] != b[j - 1];
			int v = p[j] + 1;
			if (c[j - 1] + 1 < v)
				v = c[j - 1] + 1;
			if (p[j - 1] + cost < v)
				v = p[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < v)
				v = pp[j - 2] + 1;
			c[j] = v;
			if (v < best)
				best = v;
		}
		if (best > max)
			return max + 1;
		int *t = pp;
		pp = p;
		p = c;
		c = t;
	}
	return p[bn];
}

/* The order of corrections: the most frequent first, then byte order. */
static bool cand_before(const lexicon *lx, uint32_t a, uint32_t b)
{
	uint64_t da = lex_df(lx, a), db = lex_df(lx, b);
	const term_t *tb = &lx->terms[b];
	return da > db || (da == db && term_cmp_str(lx, a, tb->s, tb->len) < 0);
}

typedef struct {
	const lexicon *lx;
	const char *w;
	size_t n;
	int maxd, best;
	uint32_t cand[64];
	size_t ncand;
} correct_ctx;

static void consider(correct_ctx *cx, const char *s, size_t n)
{
	uint32_t li = strmap_get(&cx->lx->dels, s, n);
	if (li == ES_NONE)
		return;
	const idlist *l = &cx->lx->dlists[li];
	for (uint32_t k = 0; k < l->n; k++) {
		uint32_t t = l->ids[k];
		if (t >= cx->lx->nterms)
			continue;
		const term_t *tm = &cx->lx->terms[t];
		if (tm->len == cx->n && memcmp(tm->s, cx->w, cx->n) == 0)
			continue;
		if (roaring_bitmap_is_empty(tm->docs))
			continue;
		int d = es_osa_distance(cx->w, cx->n, tm->s, tm->len, cx->maxd);
		if (d > cx->maxd || d > cx->best)
			continue;
		if (d < cx->best) {
			cx->best = d;
			cx->ncand = 0;
		}
		bool dup = false;
		for (size_t i = 0; i < cx->ncand && !dup; i++)
			dup = cx->cand[i] == t;
		if (dup)
			continue;
		if (cx->ncand < sizeof cx->cand / sizeof cx->cand[0]) {
			cx->cand[cx->ncand++] = t;
			continue;
		}
		/* Full (a dense family of codes can have hundreds of words at
		 * distance 1): keep the best 64 by the final order, not the
		 * first 64 the lookup happens to meet. */
		size_t worst = 0;
		for (size_t i = 1; i < cx->ncand; i++)
			if (cand_before(cx->lx, cx->cand[worst], cx->cand[i]))
				worst = i;
		if (cand_before(cx->lx, t, cx->cand[worst]))
			cx->cand[worst] = t;
	}
}

size_t lex_correct(const lexicon *lx, const char *w, size_t n, uint32_t *out, size_t max, int *dist)
{
	correct_ctx cx = {.lx = lx, .w = w, .n = n, .maxd = es_max_typo_distance(n)};
	cx.best = cx.maxd + 1;
	if (cx.maxd == 0)
		return 0;
	consider(&cx, w, n);
	char buf[ES_MAX_TOKEN_BYTES], buf2[ES_MAX_TOKEN_BYTES];
	for (size_t i = 0; i < n; i++) {
		memcpy(buf, w, i);
		memcpy(buf + i, w + i + 1, n - i - 1);
		consider(&cx, buf, n - 1);
		if (cx.maxd >= 2)
			for (size_t j = i; j < n - 1; j++) {
				memcpy(buf2, buf, j);
				memcpy(buf2 + j, buf + j + 1, n - 2 - j);
				consider(&cx, buf2, n - 2);
			}
	}
	if (cx.ncand == 0)
		return 0;
	/* At most 64 candidates: an insertion sort. */
	for (size_t i = 1; i < cx.ncand; i++) {
		uint32_t v = cx.cand[i];
		size_t j = i;
		while (j > 0) {
			if (!cand_before(lx, v, cx.cand[j - 1]))
				break;
			cx.cand[j] = cx.cand[j - 1];
			j--;
		}
		cx.cand[j] = v;
	}
	size_t k = cx.ncand < max ? cx.ncand : max;
	memcpy(out, cx.cand, k * sizeof *out);
	*dist = cx.best;
	return k;
}

size_t lex_memory(const lexicon *lx)
{
	size_t n = strmap_memory(&lx->map) + strmap_memory(&lx->dels) + es_heap_size(lx->terms) +
	           es_heap_size(lx->sorted) + es_heap_size(lx->dlists);
	for (uint32_t i = 0; i < lx->nterms; i++)
		n += es_bitmap_memory(lx->terms[i].docs) + es_bitmap_memory(lx->terms[i].title);
	for (uint32_t i = 0; i < lx->ndlists; i++)
		n += es_heap_size(lx->dlists[i].ids);
	return n;
}
