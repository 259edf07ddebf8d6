/* Facet counts over a whole match set. Each dimension is counted one of two
 * ways with identical results: by intersecting the match bitmap with every
 * value's bitmap, or during one shared pass over the matching documents.
 * The cheaper one is picked per dimension (see use_bitmaps). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static bool use_bitmaps(const es_index *ix, uint64_t total, uint64_t nvalues)
{
	if (ix->cfg.facet_mode == 1)
		return true;
	if (ix->cfg.facet_mode == 2)
		return false;
	/* An intersection costs about the smaller of its two containers per
	 * 65536 ids (two bitsets: a fixed 1024-word popcount; two arrays: a
	 * merge of both). Summed over all values that is about every posting
	 * of the dimension when matches are dense, and nvalues times the
	 * matches when they are sparse, while the pass costs the matches
	 * times the values per document, shared by all dimensions. So
	 * intersections only pay for few values and a large share of the
	 * index matching (measured on the benchmark catalog). */
	return nvalues <= 32 && total * 4 >= ix->live_count;
}

static int count_cmp(const void *a, const void *b)
{
	const es_count *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->value, y->value);
}

static int akey_cmp(const void *a, const void *b)
{
	return strcmp(((const es_attr_facet *)a)->key, ((const es_attr_facet *)b)->key);
}

/* body runs with id bound to each matching document, in batches. */
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

/* body runs with f bound to each matching document's facet record, in
 * batches of 256 whose records, then values, are fetched ahead: matches
 * scattered over the index would otherwise miss the cache twice each. */
#define FOR_EACH_FREC(ix, m, f, body)                                              \
	do {                                                                       \
		roaring_uint32_iterator_t it_;                                     \
		roaring_init_iterator((m), &it_);                                  \
		uint32_t buf_[256], got_;                                          \
		while ((got_ = roaring_read_uint32_iterator(&it_, buf_, 256)) > 0) { \
			for (uint32_t j_ = 0; j_ < got_; j_++)                     \
				__builtin_prefetch(&(ix)->frecs[buf_[j_]]);        \
			for (uint32_t j_ = 0; j_ < got_; j_++)                     \
				__builtin_prefetch((ix)->frecs[buf_[j_]].vals);    \
			for (uint32_t j_ = 0; j_ < got_; j_++) {                   \
				const frec *f = &(ix)->frecs[buf_[j_]];            \
				body;                                              \
			}                                                          \
		}                                                                  \
	} while (0)

/* The facet bucket of a price: after the last bound <= it; none below the
 * first bound. */
static inline void classify(const int64_t *b, size_t nb, es_price_bucket *pb, int64_t v)
{
	size_t lo = 0, hi = nb;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (b[mid] <= v)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0)
		pb[lo - 1].count++;
}

static int price_by_buckets(const es_index *ix, const int64_t *b, size_t nb, es_price_bucket *pb,
                            const roaring_bitmap_t *m)
{
	const bcol *col = &ix->price;
	int64_t kb[32];
	for (size_t i = 0; i < nb; i++)
		kb[i] = es_price_key(b[i]);
	for (uint32_t i = 0; i < col->n; i++) {
		int64_t k = col->b[i].key;
		/* A value bucket strictly between two bounds' buckets lies wholly
		 * in one facet bucket; one sharing a bound's bucket is split per
		 * document. */
		bool edge = false;
		size_t f = 0; /* facet buckets whose bound's bucket is below k */
		for (size_t j = 0; j < nb; j++) {
			if (kb[j] == k)
				edge = true;
			if (kb[j] < k)
				f = j + 1;
		}
		if (!edge) {
			if (f > 0)
				pb[f - 1].count += roaring_bitmap_and_cardinality(m, col->b[i].bm);
			continue;
		}
		roaring_bitmap_t *x = roaring_bitmap_and(m, col->b[i].bm);
		if (!x)
			return ES_ENOMEM;
		FOR_EACH_MATCH(x, id, classify(b, nb, pb, ix->frecs[id].price));
		bm_free(x);
	}
	return ES_OK;
}

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
	if (k > 1)
		qsort(*out, k, sizeof **out, count_cmp);
	*nout = k;
	return ES_OK;
}

static int emit_attrs(const es_index *ix, const es_query *q, const uint64_t *vc, const uint64_t *kc,
                      es_result *r, arena *a)
{
	uint32_t top =
	        q->facet_values_per_key ? q->facet_values_per_key : ix->cfg.facet_values_per_key;
	size_t nk = 0;
	for (uint32_t k = 0; k < ix->nakeys; k++)
		nk += kc[k] > 0;
	r->attrs = arena_alloc(a, (nk ? nk : 1) * sizeof *r->attrs);
	if (!r->attrs)
		return ES_ENOMEM;
	size_t fi = 0;
	int rc = ES_ENOMEM;
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
			goto out;
		size_t nv = 0;
		for (uint32_t j = 0; j < vals->n; j++)
			if (vc[vals->ids[j]])
				scratch[nv++] =
				        (es_count){ix->avals[vals->ids[j]].value, vc[vals->ids[j]]};
		if (nv > 1)
			qsort(scratch, nv, sizeof *scratch, count_cmp);
		af->distinct_values = nv;
		af->value_count = nv < top ? nv : top;
		af->values = arena_alloc(a, (af->value_count ? af->value_count : 1) *
		                                    sizeof *af->values);
		if (!af->values)
			goto out;
		for (size_t j = 0; j < af->value_count; j++) {
			af->values[j].value = arena_strdup(a, scratch[j].value);
			af->values[j].count = scratch[j].count;
			if (!af->values[j].value)
				goto out;
		}
	}
	r->attr_count = fi;
	if (fi > 1)
		qsort(r->attrs, fi, sizeof *r->attrs, akey_cmp);
	rc = ES_OK;
out:
	free(scratch);
	return rc;
}

void es_fc_free(tfacets *fc)
{
	if (!fc)
		return;
	free(fc->cc);
	free(fc->sc);
	free(fc->vc);
	free(fc->kc);
	free(fc);
}

static bool fit(uint32_t **arr, uint32_t *len, uint32_t need)
{
	if (need <= *len)
		return true;
	uint32_t n = need + need / 2 + 16;
	uint32_t *na = realloc(*arr, n * sizeof *na);
	if (!na)
		return false;
	memset(na + *len, 0, (n - *len) * sizeof *na);
	*arr = na;
	*len = n;
	return true;
}

bool es_fc_apply(es_index *ix, tfacets *fc, uint32_t id, int delta)
{
	const frec *f = &ix->frecs[id];
	if (!fit(&fc->cc, &fc->ncc, ix->ncats) || !fit(&fc->sc, &fc->nsc, ix->nstores) ||
	    !fit(&fc->vc, &fc->nvc, ix->navals) || !fit(&fc->kc, &fc->nkc, ix->nakeys))
		return false;
	for (uint8_t i = 0; i < f->ncat; i++)
		fc->cc[f->vals[i]] += (uint32_t)delta;
	fc->sc[f->store] += (uint32_t)delta;
	for (uint8_t i = 0; i < f->nattr; i++) {
		uint32_t v = f->vals[f->ncat + i];
		fc->vc[v] += (uint32_t)delta;
		fc->kc[ix->avals[v].key] += (uint32_t)delta;
	}
	fc->pk[es_price_key(f->price)] += (uint32_t)delta;
	return true;
}

static int widen(uint64_t *dst, const uint32_t *src, uint32_t nsrc, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		dst[i] = i < nsrc ? src[i] : 0;
	return ES_OK;
}

/* Facets from a word's kept counts, less the counts of its products in
 * `out` (NULL: none) that the match set left out; only the price
 * buckets' edges need the matching documents. */
static int facets_from_fc(es_index *ix, const es_query *q, const roaring_bitmap_t *m,
                          const tfacets *fc, const roaring_bitmap_t *out, es_result *r,
                          arena *a)
{
	size_t nb = q->price_bound_count;
	const int64_t *b = q->price_bounds;
	uint64_t *cc = calloc(ix->ncats + 1, sizeof *cc);
	uint64_t *sc = calloc(ix->nstores + 1, sizeof *sc);
	uint64_t *vc = calloc(ix->navals + 1, sizeof *vc);
	uint64_t *kc = calloc(ix->nakeys + 1, sizeof *kc);
	uint64_t *pk = calloc(ES_PRICE_KEYS, sizeof *pk);
	es_price_bucket *pb = nb ? arena_alloc(a, nb * sizeof *pb) : NULL;
	int rc = ES_ENOMEM;
	if (!cc || !sc || !vc || !kc || !pk || (nb && !pb))
		goto out;
	widen(cc, fc->cc, fc->ncc, ix->ncats);
	widen(sc, fc->sc, fc->nsc, ix->nstores);
	widen(vc, fc->vc, fc->nvc, ix->navals);
	widen(kc, fc->kc, fc->nkc, ix->nakeys);
	for (int64_t k = 0; k < ES_PRICE_KEYS; k++)
		pk[k] = fc->pk[k];
	if (out)
		FOR_EACH_FREC(ix, out, f, {
			for (uint8_t i = 0; i < f->ncat; i++)
				cc[f->vals[i]]--;
			sc[f->store]--;
			for (uint8_t i = 0; i < f->nattr; i++) {
				uint32_t v = f->vals[f->ncat + i];
				vc[v]--;
				kc[ix->avals[v].key]--;
			}
			pk[es_price_key(f->price)]--;
		});
	if ((rc = emit(&r->categories, &r->category_count, cc, ix->cats, ix->ncats, a)) != ES_OK)
		goto out;
	if ((rc = emit(&r->stores, &r->store_count, sc, ix->stores, ix->nstores, a)) != ES_OK)
		goto out;
	if ((rc = emit_attrs(ix, q, vc, kc, r, a)) != ES_OK)
		goto out;
	for (size_t i = 0; i < nb; i++) {
		pb[i].lo = b[i];
		pb[i].hi = i + 1 < nb ? b[i + 1] : INT64_MAX;
	}
	r->price_buckets = pb;
	r->price_bucket_count = nb;
	int64_t kb[32];
	for (size_t i = 0; i < nb; i++)
		kb[i] = es_price_key(b[i]);
	for (int64_t k = 0; k < ES_PRICE_KEYS && nb; k++) {
		if (!pk[k])
			continue;
		bool edge = false;
		size_t f = 0;
		for (size_t j = 0; j < nb; j++) {
			if (kb[j] == k)
				edge = true;
			if (kb[j] < k)
				f = j + 1;
		}
		if (!edge) {
			if (f > 0)
				pb[f - 1].count += pk[k];
			continue;
		}
		/* A bound inside this bucket: its matching documents one by one. */
		const bcol *col = &ix->price;
		for (uint32_t i = 0; i < col->n; i++) {
			if (col->b[i].key != k)
				continue;
			roaring_bitmap_t *x = roaring_bitmap_and(m, col->b[i].bm);
			if (!x) {
				rc = ES_ENOMEM;
				goto out;
			}
			FOR_EACH_MATCH(x, id, classify(b, nb, pb, ix->frecs[id].price));
			bm_free(x);
		}
	}
	rc = ES_OK;
out:
	free(cc);
	free(sc);
	free(vc);
	free(kc);
	free(pk);
	return rc;
}

int es_compute_facets(es_index *ix, const es_query *q, const roaring_bitmap_t *m, const tfacets *fc,
                      const roaring_bitmap_t *word, es_result *r, arena *a)
{
	uint64_t total = roaring_bitmap_get_cardinality(m);
	if (fc && !word)
		return facets_from_fc(ix, q, m, fc, NULL, r, a);
	if (fc && roaring_bitmap_get_cardinality(word) - total < total) {
		/* Filters that leave out fewer products than they keep (in
		 * stock, a price floor): the pass goes over those left out. */
		roaring_bitmap_t *out = roaring_bitmap_andnot(word, m);
		if (!out)
			return ES_ENOMEM;
		int rc = facets_from_fc(ix, q, m, fc, out, r, a);
		bm_free(out);
		return rc;
	}
	size_t nb = q->price_bound_count;
	const int64_t *b = q->price_bounds;
	bool cat_bm = use_bitmaps(ix, total, ix->ncats);
	bool store_bm = use_bitmaps(ix, total, ix->nstores);
	bool attr_bm = use_bitmaps(ix, total, ix->navals);
	bool price_bm = nb && use_bitmaps(ix, total, ix->price.n);
	uint64_t *cc = calloc(ix->ncats + 1, sizeof *cc);
	uint64_t *sc = calloc(ix->nstores + 1, sizeof *sc);
	uint64_t *vc = calloc(ix->navals + 1, sizeof *vc);
	uint64_t *kc = calloc(ix->nakeys + 1, sizeof *kc);
	es_price_bucket *pb = nb ? arena_alloc(a, nb * sizeof *pb) : NULL;
	int rc = ES_ENOMEM;
	if (!cc || !sc || !vc || !kc || (nb && !pb))
		goto out;
	for (size_t i = 0; i < nb; i++) {
		pb[i].lo = b[i];
		pb[i].hi = i + 1 < nb ? b[i + 1] : INT64_MAX;
	}
	r->price_buckets = pb;
	r->price_bucket_count = nb;

	if (cat_bm)
		for (uint32_t i = 0; i < ix->ncats; i++)
			cc[i] = roaring_bitmap_and_cardinality(m, ix->cats[i].bm);
	if (store_bm)
		for (uint32_t i = 0; i < ix->nstores; i++)
			sc[i] = roaring_bitmap_and_cardinality(m, ix->stores[i].bm);
	if (attr_bm)
		for (uint32_t k = 0; k < ix->nakeys; k++) {
			kc[k] = roaring_bitmap_and_cardinality(m, ix->akeys[k].bm);
			if (!kc[k])
				continue;
			const idlist *vals = &ix->akeys[k].values;
			for (uint32_t j = 0; j < vals->n; j++)
				vc[vals->ids[j]] = roaring_bitmap_and_cardinality(
				        m, ix->avals[vals->ids[j]].bm);
		}
	if (price_bm && (rc = price_by_buckets(ix, b, nb, pb, m)) != ES_OK)
		goto out;
	if (!cat_bm || !store_bm || !attr_bm || (nb && !price_bm)) {
		/* One pass for every dimension left: each document's data is read
		 * once (es_optimize lays it out in id order). */
		bool pass_price = nb && !price_bm;
		FOR_EACH_FREC(ix, m, f, {
			if (!cat_bm)
				for (uint8_t i = 0; i < f->ncat; i++)
					cc[f->vals[i]]++;
			if (!store_bm)
				sc[f->store]++;
			if (!attr_bm)
				for (uint8_t i = 0; i < f->nattr; i++) {
					uint32_t v = f->vals[f->ncat + i];
					vc[v]++;
					kc[ix->avals[v].key]++;
				}
			if (pass_price)
				classify(b, nb, pb, f->price);
		});
	}
	if ((rc = emit(&r->categories, &r->category_count, cc, ix->cats, ix->ncats, a)) != ES_OK)
		goto out;
	if ((rc = emit(&r->stores, &r->store_count, sc, ix->stores, ix->nstores, a)) != ES_OK)
		goto out;
	rc = emit_attrs(ix, q, vc, kc, r, a);
out:
	free(cc);
	free(sc);
	free(vc);
	free(kc);
	return rc;
}

static int copy_counts(es_count **dst, const es_count *src, size_t n, arena *a)
{
	*dst = arena_alloc(a, (n ? n : 1) * sizeof **dst);
	if (!*dst)
		return ES_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		(*dst)[i].value = arena_strdup(a, src[i].value);
		(*dst)[i].count = src[i].count;
		if (!(*dst)[i].value)
			return ES_ENOMEM;
	}
	return ES_OK;
}

int es_copy_facets(es_result *dst, const es_result *src, arena *a)
{
	if (copy_counts(&dst->categories, src->categories, src->category_count, a) != ES_OK ||
	    copy_counts(&dst->stores, src->stores, src->store_count, a) != ES_OK)
		return ES_ENOMEM;
	dst->category_count = src->category_count;
	dst->store_count = src->store_count;
	if (src->price_bucket_count) {
		dst->price_buckets =
		        arena_alloc(a, src->price_bucket_count * sizeof *dst->price_buckets);
		if (!dst->price_buckets)
			return ES_ENOMEM;
		memcpy(dst->price_buckets, src->price_buckets,
		       src->price_bucket_count * sizeof *dst->price_buckets);
	}
	dst->price_bucket_count = src->price_bucket_count;
	dst->attrs = arena_alloc(a, (src->attr_count ? src->attr_count : 1) * sizeof *dst->attrs);
	if (!dst->attrs)
		return ES_ENOMEM;
	for (size_t i = 0; i < src->attr_count; i++) {
		es_attr_facet *d = &dst->attrs[i];
		const es_attr_facet *s = &src->attrs[i];
		*d = *s;
		d->key = arena_strdup(a, s->key);
		if (!d->key || copy_counts(&d->values, s->values, s->value_count, a) != ES_OK)
			return ES_ENOMEM;
	}
	dst->attr_count = src->attr_count;
	return ES_OK;
}
