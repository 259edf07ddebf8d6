/* Suggest: the best titles for what has been typed so far. Documents in the
 * ordered part come best first, so each candidate word needs only its first
 * few title postings; the tail (added since the last es_optimize) is read
 * whole and merged by static score. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
	uint32_t *ids;
	size_t n, cap;
	bool oom;
	const lexicon *lx;
} tlist;

static void add_prefix_term(uint32_t t, void *arg)
{
	tlist *l = arg;
	if (roaring_bitmap_is_empty(l->lx->terms[t].title))
		return;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 32;
		uint32_t *ni = realloc(l->ids, nc * sizeof *ni);
		if (!ni) {
			l->oom = true;
			return;
		}
		l->ids = ni;
		l->cap = nc;
	}
	l->ids[l->n++] = t;
}

typedef struct {
	char word[ES_MAX_TOKEN_BYTES];
	size_t len;
} sword;

typedef struct {
	sword w[ES_MAX_QUERY_TERMS];
	size_t n;
} swords;

static bool add_sword(const char *w, size_t n, void *arg)
{
	swords *s = arg;
	if (s->n == ES_MAX_QUERY_TERMS)
		return false;
	memcpy(s->w[s->n].word, w, n);
	s->w[s->n++].len = n;
	return true;
}

static void heap_up(uint32_t *h, size_t i)
{
	while (i > 0 && h[(i - 1) / 2] < h[i]) {
		uint32_t t = h[i];
		h[i] = h[(i - 1) / 2];
		h[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static void heap_down(uint32_t *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && h[l] > h[m])
			m = l;
		if (r < n && h[r] > h[m])
			m = r;
		if (m == i)
			return;
		uint32_t t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static int by_static(const void *a, const void *b, void *arg)
{
	const es_index *ix = arg;
	const doc_t *x = &ix->docs[*(const uint32_t *)a], *y = &ix->docs[*(const uint32_t *)b];
	if (x->stat != y->stat)
		return x->stat > y->stat ? -1 : 1;
	return strcmp(x->pid, y->pid);
}

void es_suggest_result_free(es_suggest_result *r)
{
	if (!r)
		return;
	if (r->mem_) {
		arena_free(r->mem_);
		free(r->mem_);
	}
	memset(r, 0, sizeof *r);
}

int es_suggest(es_index *ix, const char *prefix, size_t limit, es_suggest_result *out)
{
	memset(out, 0, sizeof *out);
	if (!prefix || limit < 1 || limit > ES_MAX_SUGGEST)
		return ES_EINVAL;
	arena *ra = calloc(1, sizeof *ra);
	if (!ra)
		return ES_ENOMEM;
	out->mem_ = ra;
	out->items = arena_alloc(ra, limit * sizeof *out->items);
	if (!out->items) {
		es_suggest_result_free(out);
		return ES_ENOMEM;
	}
	swords sw = {.n = 0};
	es_tokenize(prefix, add_sword, &sw);
	if (sw.n == 0)
		return ES_OK;

	int rc = ES_OK;
	roaring_bitmap_t *base = NULL;
	tlist tl = {.lx = &ix->lex};
	uint32_t *cand = NULL;
	pthread_rwlock_rdlock(&ix->lock);
	/* Every word but the last must be a title word. */
	for (size_t i = 0; i + 1 < sw.n; i++) {
		uint32_t t = lex_find(&ix->lex, sw.w[i].word, sw.w[i].len);
		if (t == ES_NONE)
			goto out;
		if (!base) {
			base = roaring_bitmap_copy(ix->lex.terms[t].title);
			if (!base)
				goto oom;
		} else {
			roaring_bitmap_and_inplace(base, ix->lex.terms[t].title);
		}
	}
	const sword *last = &sw.w[sw.n - 1];
	lex_prefix(&ix->lex, last->word, last->len, add_prefix_term, &tl);
	if (tl.oom)
		goto oom;
	if (tl.n == 0)
		goto out;

	/* The H smallest ordered ids over all the words (a max-heap: each
	 * word's postings are read only while they beat the heap's largest),
	 * plus every tail document; if dropping equal titles leaves too few,
	 * again with a larger H. */
	for (size_t h = 4 * limit;; h *= 4) {
		size_t nheap = 0, cap = h + 64, ncand;
		free(cand);
		cand = malloc(cap * sizeof *cand);
		if (!cand)
			goto oom;
		for (size_t k = 0; k < tl.n; k++) {
			roaring_uint32_iterator_t it;
			roaring_init_iterator(ix->lex.terms[tl.ids[k]].title, &it);
			for (; it.has_value && it.current_value < ix->sorted_upto;
			     roaring_advance_uint32_iterator(&it)) {
				uint32_t id = it.current_value;
				if (nheap == h && id >= cand[0])
					break;
				if (base && !roaring_bitmap_contains(base, id))
					continue;
				bool dup = false;
				for (size_t j = 0; j < nheap && !dup; j++)
					dup = cand[j] == id;
				if (dup)
					continue;
				if (nheap == h) {
					cand[0] = cand[--nheap];
					heap_down(cand, nheap, 0);
				}
				cand[nheap++] = id;
				heap_up(cand, nheap - 1);
			}
		}
		bool full = nheap == h;
		uint32_t edge = full ? cand[0] : 0; /* ordered ids above it unseen */
		ncand = nheap;
		for (size_t k = 0; k < tl.n; k++) {
			roaring_uint32_iterator_t it;
			roaring_init_iterator(ix->lex.terms[tl.ids[k]].title, &it);
			if (!roaring_move_uint32_iterator_equalorlarger(&it, ix->sorted_upto))
				continue;
			for (; it.has_value; roaring_advance_uint32_iterator(&it)) {
				uint32_t id = it.current_value;
				if (base && !roaring_bitmap_contains(base, id))
					continue;
				if (ncand == cap) {
					uint32_t *nc = realloc(cand, cap * 2 * sizeof *nc);
					if (!nc)
						goto oom;
					cand = nc;
					cap *= 2;
				}
				cand[ncand++] = id;
			}
		}
		if (ncand > 1)
			qsort_r(cand, ncand, sizeof *cand, by_static, ix);
		size_t got = 0;
		bool retry = false;
		for (size_t i = 0; i < ncand && got < limit; i++) {
			if (i > 0 && cand[i] == cand[i - 1])
				continue;
			const doc_t *d = &ix->docs[cand[i]];
			bool dup = false;
			for (size_t j = 0; j < got && !dup; j++)
				dup = strcmp(out->items[j].title, d->title) == 0;
			if (!dup) {
				out->items[got].product_id = arena_strdup(ra, d->pid);
				out->items[got].title = arena_strdup(ra, d->title);
				if (!out->items[got].product_id || !out->items[got].title)
					goto oom;
				got++;
			}
			/* Past the heap's last document, unseen ordered ones could
			 * come first. */
			if (full && cand[i] == edge && got < limit) {
				retry = true;
				break;
			}
		}
		out->count = got;
		if (!retry)
			break;
	}
	goto out;
oom:
	rc = ES_ENOMEM;
out:
	pthread_rwlock_unlock(&ix->lock);
	bm_free(base);
	free(tl.ids);
	free(cand);
	if (rc != ES_OK)
		es_suggest_result_free(out);
	return rc;
}
