/* Facet counts over a whole match set. Each dimension is counted one of two
 * ways with identical results: by intersecting the match bitmap with every
 * value's bitmap (cost grows with the number of values, not of matches),
 * or by one pass over the matching documents (cost grows with matches). The
 * cheaper one is picked per dimension. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* Roughly what one and_cardinality costs against a pass over one document,
 * measured on the benchmark catalog. */
#define BITMAP_VS_DOC 64

static bool use_bitmaps(const es_index *ix, uint64_t total, uint64_t nvalues, uint64_t per_doc)
{
	if (ix->cfg.facet_mode == 1)
		return true;
	if (ix->cfg.facet_mode == 2)
		return false;
	return total * per_doc > nvalues * BITMAP_VS_DOC;
}

static int count_cmp(const void *a, const void *b)
{
	const es_count *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->value, y->value);
}

/* Calls fn(doc) for every matching document, in batches. */
#define FOR_EACH_MATCH(m, id, body)                                                \
	do {                                                                       \
		roaring_uint32_iterator_t it_;                                     \
		roaring_init_iterator((m), &it_);                                  \
		uint32_t buf_[256], got_;                                          \
		while ((got_ = roaring_read_uint32_iterator(&it_, buf_, 256)) > 0) \
			for (uint32_t j_ = 0; j_ < got_; j_++) {                   \
				uint32_t id = buf_[j_];                            \
				body;                                              \
			}                                                          \
	} while (0)

static int emit(es_count **out, size_t *nout, const uint64_t *counts, const named_set *sets,
                uint32_t n, arena *a)
{
	size_t k = 0;
	for (uint32_t i = 0; i < n; i++)
		k += counts[i] > 0;
	*out = arena_alloc(a, (k ? k : 1) * sizeof **out);
	if (!*out)
		return ES_ENOMEM;
	k = 0;
	for (uint32_t i = 0; i < n; i++)
		if (counts[i]) {
			(*out)[k].value = arena_strdup(a, sets[i].id);
			if (!(*out)[k].value)
				return ES_ENOMEM;
			(*out)[k++].count = counts[i];
		}
	qsort(*out, k, sizeof **out, count_cmp);
	*nout = k;
	return ES_OK;
}

static int price_facet(const es_index *ix, const es_query *q, const roaring_bitmap_t *m,
                       uint64_t total, es_result *r, arena *a)
{
	size_t nb = q->price_bound_count;
	const int64_t *b = q->price_bounds;
	es_price_bucket *pb = arena_alloc(a, nb * sizeof *pb);
	if (!pb)
		return ES_ENOMEM;
	for (size_t i = 0; i < nb; i++) {
		pb[i].lo = b[i];
		pb[i].hi = i + 1 < nb ? b[i + 1] : INT64_MAX;
	}
	r->price_buckets = pb;
	r->price_bucket_count = nb;
	/* The facet bucket of a price: the last bound <= it, -1 below the first. */
#define CLASSIFY(v)                                    \
	do {                                           \
		int64_t v_ = (v);                      \
		size_t lo_ = 0, hi_ = nb;              \
		while (lo_ < hi_) {                    \
			size_t mid_ = (lo_ + hi_) / 2; \
			if (b[mid_] <= v_)             \
				lo_ = mid_ + 1;        \
			else                           \
				hi_ = mid_;            \
		}                                      \
		if (lo_ > 0)                           \
			pb[lo_ - 1].count++;           \
	} while (0)
	const bcol *col = &ix->price;
	if (!use_bitmaps(ix, total, col->n, 1)) {
		FOR_EACH_MATCH(m, id, CLASSIFY(ix->docs[id].price));
		return ES_OK;
	}
	int64_t kb[32];
	for (size_t i = 0; i < nb; i++)
		kb[i] = es_price_key(b[i]);
	for (uint32_t i = 0; i < col->n; i++) {
		int64_t k = col->b[i].key;
		/* A value bucket strictly between two bounds' buckets lies wholly in
		 * one facet bucket; one sharing a bound's bucket is split per doc. */
		bool edge = false;
		size_t f = 0; /* facet buckets whose bound bucket is below k */
		for (size_t j = 0; j < nb; j++) {
			if (kb[j] == k)
				edge = true;
			if (kb[j] < k)
				f = j + 1;
		}
		if (!edge) {
			if (f == 0)
				continue;
			pb[f - 1].count += roaring_bitmap_and_cardinality(m, col->b[i].bm);
			continue;
		}
		roaring_bitmap_t *x = roaring_bitmap_and(m, col->b[i].bm);
		if (!x)
			return ES_ENOMEM;
		FOR_EACH_MATCH(x, id, CLASSIFY(ix->docs[id].price));
		bm_free(x);
	}
#undef CLASSIFY
	return ES_OK;
}

static int vcount_cmp(const void *a, const void *b)
{
	return count_cmp(a, b);
}

static int akey_cmp(const void *a, const void *b)
{
	return strcmp(((const es_attr_facet *)a)->key, ((const es_attr_facet *)b)->key);
}

static int attr_facets(const es_index *ix, const es_query *q, const roaring_bitmap_t *m,
                       uint64_t total, es_result *r, arena *a)
{
	uint32_t top =
	        q->facet_values_per_key ? q->facet_values_per_key : ix->cfg.facet_values_per_key;
	uint64_t *vc = calloc(ix->navals ? ix->navals : 1, sizeof *vc);
	uint64_t *kc = calloc(ix->nakeys ? ix->nakeys : 1, sizeof *kc);
	int rc = ES_ENOMEM;
	if (!vc || !kc)
		goto out;
	if (use_bitmaps(ix, total, ix->navals, 4)) {
		for (uint32_t k = 0; k < ix->nakeys; k++) {
			kc[k] = roaring_bitmap_and_cardinality(m, ix->akeys[k].bm);
			if (!kc[k])
				continue;
			const idlist *vals = &ix->akeys[k].values;
			for (uint32_t j = 0; j < vals->n; j++)
				vc[vals->ids[j]] = roaring_bitmap_and_cardinality(
				        m, ix->avals[vals->ids[j]].bm);
		}
	} else {
		FOR_EACH_MATCH(m, id, {
			const doc_t *d = &ix->docs[id];
			for (uint8_t i = 0; i < d->nattr; i++) {
				vc[d->attrv[i]]++;
				kc[ix->avals[d->attrv[i]].key]++;
			}
		});
	}
	size_t nk = 0;
	for (uint32_t k = 0; k < ix->nakeys; k++)
		nk += kc[k] > 0;
	r->attrs = arena_alloc(a, (nk ? nk : 1) * sizeof *r->attrs);
	if (!r->attrs)
		goto out;
	size_t fi = 0;
	es_count *scratch = NULL;
	for (uint32_t k = 0; k < ix->nakeys; k++) {
		if (!kc[k])
			continue;
		const idlist *vals = &ix->akeys[k].values;
		es_attr_facet *af = &r->attrs[fi++];
		af->key = arena_strdup(a, ix->akeys[k].key);
		af->docs = kc[k];
		free(scratch);
		scratch = malloc((vals->n ? vals->n : 1) * sizeof *scratch);
		if (!af->key || !scratch)
			goto out_scratch;
		size_t nv = 0;
		for (uint32_t j = 0; j < vals->n; j++)
			if (vc[vals->ids[j]])
				scratch[nv++] =
				        (es_count){ix->avals[vals->ids[j]].value, vc[vals->ids[j]]};
		qsort(scratch, nv, sizeof *scratch, vcount_cmp);
		af->distinct_values = nv;
		af->value_count = nv < top ? nv : top;
		af->values = arena_alloc(a, (af->value_count ? af->value_count : 1) *
		                                    sizeof *af->values);
		if (!af->values)
			goto out_scratch;
		for (size_t j = 0; j < af->value_count; j++) {
			af->values[j].value = arena_strdup(a, scratch[j].value);
			af->values[j].count = scratch[j].count;
			if (!af->values[j].value)
				goto out_scratch;
		}
	}
	r->attr_count = fi;
	qsort(r->attrs, fi, sizeof *r->attrs, akey_cmp);
	rc = ES_OK;
out_scratch:
	free(scratch);
out:
	free(vc);
	free(kc);
	return rc;
}

int es_compute_facets(es_index *ix, const es_query *q, const roaring_bitmap_t *m, es_result *r,
                      arena *a)
{
	uint64_t total = roaring_bitmap_get_cardinality(m);
	uint32_t nmax = ix->ncats > ix->nstores ? ix->ncats : ix->nstores;
	uint64_t *counts = calloc(nmax ? nmax : 1, sizeof *counts);
	if (!counts)
		return ES_ENOMEM;
	int rc;
	if (use_bitmaps(ix, total, ix->ncats, 4)) {
		for (uint32_t i = 0; i < ix->ncats; i++)
			counts[i] = roaring_bitmap_and_cardinality(m, ix->cats[i].bm);
	} else {
		FOR_EACH_MATCH(m, id, {
			const doc_t *d = &ix->docs[id];
			for (uint8_t i = 0; i < d->ncat; i++)
				counts[d->cats[i]]++;
		});
	}
	rc = emit(&r->categories, &r->category_count, counts, ix->cats, ix->ncats, a);
	if (rc != ES_OK)
		goto out;
	memset(counts, 0, (nmax ? nmax : 1) * sizeof *counts);
	if (use_bitmaps(ix, total, ix->nstores, 1)) {
		for (uint32_t i = 0; i < ix->nstores; i++)
			counts[i] = roaring_bitmap_and_cardinality(m, ix->stores[i].bm);
	} else {
		FOR_EACH_MATCH(m, id, counts[ix->docs[id].store]++);
	}
	rc = emit(&r->stores, &r->store_count, counts, ix->stores, ix->nstores, a);
	if (rc != ES_OK)
		goto out;
	if (q->price_bound_count) {
		rc = price_facet(ix, q, m, total, r, a);
		if (rc != ES_OK)
			goto out;
	}
	rc = attr_facets(ix, q, m, total, r, a);
out:
	free(counts);
	return rc;
}
