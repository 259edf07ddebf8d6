/* Documents in, documents out: validation, term impacts, the bitmaps of
 * every filter and facet, tombstones and renumbering by static score. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *es_strerror(int status)
{
	switch (status) {
	case ES_OK: return "ok";
	case ES_EINVAL: return "invalid argument";
	case ES_ENOMEM: return "out of memory";
	case ES_ENOTFOUND: return "no such product";
	case ES_ECURSOR: return "the page cursor does not belong to this query or is damaged";
	case ES_ELIMIT: return "over a limit of the index";
	default: return "unknown error";
	}
}

void es_config_default(es_config *c)
{
	memset(c, 0, sizeof *c);
	c->title_weight = 3.0f;
	c->attr_weight = 1.5f;
	c->desc_weight = 1.0f;
	c->bm25_k1 = 1.2f;
	c->bm25_b = 0.75f;
	c->title_ref_len = 8.0f;
	c->attr_ref_len = 6.0f;
	c->desc_ref_len = 30.0f;
	c->static_weight = 2.0f;
	c->freshness_half_life_days = 180.0f;
	c->prefix_penalty = 0.8f;
	c->typo_penalty = 0.6f;
	c->prefix_min_len = 2;
	c->max_prefix_terms = 64;
	c->max_corrections = 3;
	c->rare_df = 0;
	c->facet_values_per_key = 10;
	c->facet_mode = 0;
	c->facet_cache_entries = 64;
}

/* ---- value buckets -------------------------------------------------- */

int64_t es_price_key(int64_t p)
{
	/* Exact below 32, then 16 buckets per power of two: about 6% wide, so a
	 * range edge costs a check of few documents whatever the price scale. */
	if (p < 32)
		return p;
	int e = 63 - __builtin_clzll((unsigned long long)p);
	return 32 + (int64_t)(e - 5) * 16 + ((p >> (e - 4)) & 15);
}

int64_t es_created_key(int64_t t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

int64_t es_rating_key(double r)
{
	return (int64_t)llround(r * 100.0);
}

double es_doc_sort_key(const doc_t *d, es_sort s)
{
	switch (s) {
	case ES_SORT_PRICE_ASC:
	case ES_SORT_PRICE_DESC: return (double)d->price;
	case ES_SORT_NEWEST: return (double)d->created;
	case ES_SORT_RATING: return d->rating;
	default: return d->stat;
	}
}

static uint32_t bcol_find(const bcol *c, int64_t key, bool *found)
{
	uint32_t lo = 0, hi = c->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (c->b[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < c->n && c->b[lo].key == key;
	return lo;
}

static int bcol_add(bcol *c, int64_t key, uint32_t id)
{
	bool found;
	uint32_t i = bcol_find(c, key, &found);
	if (!found) {
		if (c->n == c->cap) {
			uint32_t nc = c->cap ? c->cap * 2 : 64;
			bucket *nb = realloc(c->b, nc * sizeof *nb);
			if (!nb)
				return ES_ENOMEM;
			c->b = nb;
			c->cap = nc;
		}
		roaring_bitmap_t *bm = roaring_bitmap_create();
		if (!bm)
			return ES_ENOMEM;
		memmove(c->b + i + 1, c->b + i, (c->n - i) * sizeof *c->b);
		c->b[i] = (bucket){key, bm};
		c->n++;
	}
	roaring_bitmap_add(c->b[i].bm, id);
	return ES_OK;
}

static void bcol_remove(bcol *c, int64_t key, uint32_t id)
{
	bool found;
	uint32_t i = bcol_find(c, key, &found);
	if (found)
		roaring_bitmap_remove(c->b[i].bm, id);
}

static void bcol_free(bcol *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		bm_free(c->b[i].bm);
	free(c->b);
	memset(c, 0, sizeof *c);
}

static size_t bcol_memory(const bcol *c)
{
	size_t n = es_heap_size(c->b);
	for (uint32_t i = 0; i < c->n; i++)
		n += es_bitmap_memory(c->b[i].bm);
	return n;
}

/* ---- create / destroy ----------------------------------------------- */

es_index *es_create(const es_config *cfg)
{
	es_index *ix = calloc(1, sizeof *ix);
	if (!ix)
		return NULL;
	if (cfg)
		ix->cfg = *cfg;
	else
		es_config_default(&ix->cfg);
	if (ix->cfg.reference_time == 0)
		ix->cfg.reference_time = (int64_t)time(NULL);
	if (ix->cfg.freshness_half_life_days <= 0 || ix->cfg.bm25_k1 <= 0 ||
	    ix->cfg.title_ref_len <= 0 || ix->cfg.attr_ref_len <= 0 || ix->cfg.desc_ref_len <= 0) {
		free(ix);
		return NULL;
	}
	/* Writers first: glibc's default lets a steady stream of readers hold a
	 * writer off for ever, and a catalog change must show within a second. */
	pthread_rwlockattr_t at;
	pthread_rwlockattr_init(&at);
	pthread_rwlockattr_setkind_np(&at, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	int rc = pthread_rwlock_init(&ix->lock, &at);
	pthread_rwlockattr_destroy(&at);
	if (rc != 0) {
		free(ix);
		return NULL;
	}
	if (pthread_mutex_init(&ix->cache_lock, NULL) != 0) {
		pthread_rwlock_destroy(&ix->lock);
		free(ix);
		return NULL;
	}
	if (ix->cfg.facet_cache_entries > 4096)
		ix->cfg.facet_cache_entries = 4096;
	if (ix->cfg.facet_cache_entries) {
		ix->cache = calloc(ix->cfg.facet_cache_entries, sizeof *ix->cache);
		if (!ix->cache) {
			es_destroy(ix);
			return NULL;
		}
	}
	lex_init(&ix->lex);
	ix->live = roaring_bitmap_create();
	ix->instock = roaring_bitmap_create();
	if (!ix->live || !ix->instock) {
		es_destroy(ix);
		return NULL;
	}
	return ix;
}

static void free_doc(doc_t *d)
{
	free(d->pid);
	free(d->title);
	if (!d->in_slab)
		free(d->blob);
	memset(d, 0, sizeof *d);
}

void es_destroy(es_index *ix)
{
	if (!ix)
		return;
	for (uint32_t i = 0; i < ix->ndocs; i++)
		free_doc(&ix->docs[i]);
	free(ix->docs);
	free(ix->frecs);
	free(ix->slab);
	strmap_free(&ix->pids);
	lex_free(&ix->lex);
	for (uint32_t i = 0; i < ix->nstores; i++)
		bm_free(ix->stores[i].bm);
	free(ix->stores);
	strmap_free(&ix->store_map);
	for (uint32_t i = 0; i < ix->ncats; i++)
		bm_free(ix->cats[i].bm);
	free(ix->cats);
	strmap_free(&ix->cat_map);
	for (uint32_t i = 0; i < ix->nakeys; i++) {
		bm_free(ix->akeys[i].bm);
		free(ix->akeys[i].values.ids);
	}
	free(ix->akeys);
	strmap_free(&ix->akey_map);
	for (uint32_t i = 0; i < ix->navals; i++)
		bm_free(ix->avals[i].bm);
	free(ix->avals);
	strmap_free(&ix->aval_map);
	bm_free(ix->live);
	bm_free(ix->instock);
	bcol_free(&ix->price);
	bcol_free(&ix->created);
	bcol_free(&ix->rating);
	if (ix->cache)
		for (uint32_t i = 0; i < ix->cfg.facet_cache_entries; i++)
			arena_free(&ix->cache[i].mem);
	free(ix->cache);
	pthread_mutex_destroy(&ix->cache_lock);
	pthread_rwlock_destroy(&ix->lock);
	free(ix);
}

/* ---- named sets ----------------------------------------------------- */

static uint32_t named_intern(strmap *m, named_set **arr, uint32_t *n, uint32_t *cap, const char *s)
{
	size_t len = strlen(s);
	uint32_t id = strmap_get(m, s, len);
	if (id != ES_NONE)
		return id;
	if (*n == *cap) {
		uint32_t nc = *cap ? *cap * 2 : 64;
		named_set *na = realloc(*arr, nc * sizeof *na);
		if (!na)
			return ES_NONE;
		*arr = na;
		*cap = nc;
	}
	roaring_bitmap_t *bm = roaring_bitmap_create();
	if (!bm)
		return ES_NONE;
	char *k = strmap_put(m, s, len, *n);
	if (!k) {
		bm_free(bm);
		return ES_NONE;
	}
	(*arr)[*n] = (named_set){k, bm};
	return (*n)++;
}

static uint32_t akey_intern(es_index *ix, const char *key)
{
	size_t len = strlen(key);
	uint32_t id = strmap_get(&ix->akey_map, key, len);
	if (id != ES_NONE)
		return id;
	if (ix->nakeys == ix->akeys_cap) {
		uint32_t nc = ix->akeys_cap ? ix->akeys_cap * 2 : 32;
		attr_key *na = realloc(ix->akeys, nc * sizeof *na);
		if (!na)
			return ES_NONE;
		ix->akeys = na;
		ix->akeys_cap = nc;
	}
	roaring_bitmap_t *bm = roaring_bitmap_create();
	if (!bm)
		return ES_NONE;
	char *k = strmap_put(&ix->akey_map, key, len, ix->nakeys);
	if (!k) {
		bm_free(bm);
		return ES_NONE;
	}
	ix->akeys[ix->nakeys] = (attr_key){.key = k, .bm = bm};
	return ix->nakeys++;
}

static uint32_t aval_intern(es_index *ix, uint32_t key, const char *value)
{
	const char *k = ix->akeys[key].key;
	size_t kl = strlen(k), vl = strlen(value);
	char stackbuf[512];
	char *buf = kl + vl + 1 <= sizeof stackbuf ? stackbuf : malloc(kl + vl + 1);
	if (!buf)
		return ES_NONE;
	memcpy(buf, k, kl);
	buf[kl] = '\x1f';
	memcpy(buf + kl + 1, value, vl);
	uint32_t id = strmap_get(&ix->aval_map, buf, kl + 1 + vl);
	if (id != ES_NONE)
		goto out;
	idlist *vals = &ix->akeys[key].values;
	if (vals->n == vals->cap) {
		uint32_t nc = vals->cap ? vals->cap * 2 : 8;
		uint32_t *ni = realloc(vals->ids, nc * sizeof *ni);
		if (!ni)
			goto out;
		vals->ids = ni;
		vals->cap = nc;
	}
	if (ix->navals == ix->avals_cap) {
		uint32_t nc = ix->avals_cap ? ix->avals_cap * 2 : 256;
		attr_value *na = realloc(ix->avals, nc * sizeof *na);
		if (!na)
			goto out;
		ix->avals = na;
		ix->avals_cap = nc;
	}
	roaring_bitmap_t *bm = roaring_bitmap_create();
	if (!bm)
		goto out;
	char *owned = strmap_put(&ix->aval_map, buf, kl + 1 + vl, ix->navals);
	if (!owned) {
		bm_free(bm);
		goto out;
	}
	ix->avals[ix->navals] = (attr_value){key, owned + kl + 1, bm};
	vals->ids[vals->n++] = ix->navals;
	id = ix->navals++;
out:
	if (buf != stackbuf)
		free(buf);
	return id;
}

/* ---- upsert --------------------------------------------------------- */

static bool id_ok(const char *s)
{
	return s && *s && strlen(s) <= ES_MAX_ID_BYTES;
}

static int validate(const es_doc *d)
{
	if (!d || !id_ok(d->product_id) || !id_ok(d->store_id) || !d->title)
		return ES_EINVAL;
	if (d->category_count > ES_MAX_CATEGORY_DEPTH || d->attr_count > ES_MAX_ATTRS)
		return ES_ELIMIT;
	if (d->category_count && !d->category_path)
		return ES_EINVAL;
	for (size_t i = 0; i < d->category_count; i++)
		if (!id_ok(d->category_path[i]))
			return ES_EINVAL;
	if (d->attr_count && !d->attrs)
		return ES_EINVAL;
	for (size_t i = 0; i < d->attr_count; i++) {
		if (!id_ok(d->attrs[i].key) || !d->attrs[i].value ||
		    strlen(d->attrs[i].value) > 1024)
			return ES_EINVAL;
		for (size_t j = 0; j < i; j++)
			if (strcmp(d->attrs[i].key, d->attrs[j].key) == 0)
				return ES_EINVAL;
	}
	/* Sort keys travel as doubles: prices must stay exact. */
	if (d->price < 0 || d->price > (INT64_C(1) << 53))
		return ES_EINVAL;
	if (!d->currency || strlen(d->currency) != 3)
		return ES_EINVAL;
	for (int i = 0; i < 3; i++)
		if (d->currency[i] < 'A' || d->currency[i] > 'Z')
			return ES_EINVAL;
	if (!(d->rating >= 0.0 && d->rating <= 5.0))
		return ES_EINVAL;
	if (d->created < -(INT64_C(1) << 50) || d->created > (INT64_C(1) << 50))
		return ES_EINVAL;
	return ES_OK;
}

typedef struct {
	uint32_t term;
	uint8_t field;
} tok_ref;

typedef struct {
	es_index *ix;
	tok_ref *refs;
	size_t n, cap;
	uint8_t field;
	uint32_t field_len;
	int err;
} tok_ctx;

static bool collect(const char *w, size_t n, void *arg)
{
	tok_ctx *c = arg;
	uint32_t t = lex_intern(&c->ix->lex, w, n);
	if (t == ES_NONE) {
		c->err = ES_ENOMEM;
		return false;
	}
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 256;
		tok_ref *nr = realloc(c->refs, nc * sizeof *nr);
		if (!nr) {
			c->err = ES_ENOMEM;
			return false;
		}
		c->refs = nr;
		c->cap = nc;
	}
	c->refs[c->n++] = (tok_ref){t, c->field};
	c->field_len++;
	return true;
}

static int ref_cmp(const void *a, const void *b)
{
	const tok_ref *x = a, *y = b;
	return (x->term > y->term) - (x->term < y->term);
}

static float static_score(const es_index *ix, const es_doc *d)
{
	/* Rating pulled towards zero while it rests on few votes, sales on a log
	 * scale, freshness halving every half-life: each in 0..1. */
	double rc = (d->rating / 5.0) * ((double)d->rating_count / (d->rating_count + 5.0));
	double sc = 1.0 - 1.0 / (1.0 + log1p((double)d->sales) / 4.0);
	double age = (double)(ix->cfg.reference_time - d->created) / 86400.0;
	if (age < 0)
		age = 0;
	double fc = exp2(-age / ix->cfg.freshness_half_life_days);
	return (float)(0.5 * rc + 0.3 * sc + 0.2 * fc);
}

static float field_tf(const es_config *c, uint32_t tf, uint32_t len, float ref)
{
	if (tf == 0)
		return 0.0f;
	float norm = c->bm25_k1 * (1.0f - c->bm25_b + c->bm25_b * (float)len / ref);
	float v = (float)tf * (c->bm25_k1 + 1.0f) / ((float)tf + norm);
	/* Capped at one occurrence in a field of reference length: a word said
	 * three times in a short title is not three times as relevant, and
	 * without such outliers the best text score any document can reach
	 * stays close to what the top documents have, so top-k stops early. */
	return v < 1.0f ? v : 1.0f;
}

static void attach(es_index *ix, uint32_t id, bool terms)
{
	doc_t *d = &ix->docs[id];
	ix->frecs[id] = (frec){d->cats, d->price, d->store, d->ncat, d->nattr};
	for (uint16_t i = 0; terms && i < d->nterms; i++) {
		term_t *t = &ix->lex.terms[d->terms[i]];
		if (t->fc && !es_fc_apply(ix, t->fc, id, 1)) {
			/* Out of memory: the word's queries pass over documents again. */
			es_fc_free(t->fc);
			t->fc = NULL;
		}
		roaring_bitmap_add(t->docs, id);
		if (d->tflags[i] & TF_TITLE)
			roaring_bitmap_add(t->title, id);
		float imp = (float)d->imp[i] * ES_IMP_SCALE;
		if (imp > t->max_impact)
			t->max_impact = imp;
	}
	roaring_bitmap_add(ix->stores[d->store].bm, id);
	for (uint8_t i = 0; i < d->ncat; i++)
		roaring_bitmap_add(ix->cats[d->cats[i]].bm, id);
	for (uint8_t i = 0; i < d->nattr; i++) {
		roaring_bitmap_add(ix->avals[d->attrv[i]].bm, id);
		roaring_bitmap_add(ix->akeys[ix->avals[d->attrv[i]].key].bm, id);
	}
	roaring_bitmap_add(ix->live, id);
	if (d->stock > 0)
		roaring_bitmap_add(ix->instock, id);
}

/* The three bucket columns may need a new bucket: done first, so a failure
 * leaves nothing half attached. */
static int attach_buckets(es_index *ix, uint32_t id)
{
	doc_t *d = &ix->docs[id];
	int rc = bcol_add(&ix->price, es_price_key(d->price), id);
	if (rc == ES_OK)
		rc = bcol_add(&ix->created, es_created_key(d->created), id);
	if (rc == ES_OK)
		rc = bcol_add(&ix->rating, es_rating_key(d->rating), id);
	if (rc != ES_OK) {
		bcol_remove(&ix->price, es_price_key(d->price), id);
		bcol_remove(&ix->created, es_created_key(d->created), id);
	}
	return rc;
}

static void detach(es_index *ix, uint32_t id, bool unmap)
{
	doc_t *d = &ix->docs[id];
	for (uint16_t i = 0; i < d->nterms; i++) {
		term_t *t = &ix->lex.terms[d->terms[i]];
		if (t->fc && !es_fc_apply(ix, t->fc, id, -1)) {
			es_fc_free(t->fc);
			t->fc = NULL;
		}
		roaring_bitmap_remove(t->docs, id);
		if (d->tflags[i] & TF_TITLE)
			roaring_bitmap_remove(t->title, id);
	}
	roaring_bitmap_remove(ix->stores[d->store].bm, id);
	for (uint8_t i = 0; i < d->ncat; i++)
		roaring_bitmap_remove(ix->cats[d->cats[i]].bm, id);
	for (uint8_t i = 0; i < d->nattr; i++) {
		roaring_bitmap_remove(ix->avals[d->attrv[i]].bm, id);
		roaring_bitmap_remove(ix->akeys[ix->avals[d->attrv[i]].key].bm, id);
	}
	roaring_bitmap_remove(ix->live, id);
	roaring_bitmap_remove(ix->instock, id);
	bcol_remove(&ix->price, es_price_key(d->price), id);
	bcol_remove(&ix->created, es_created_key(d->created), id);
	bcol_remove(&ix->rating, es_rating_key(d->rating), id);
	if (unmap)
		strmap_del(&ix->pids, d->pid, strlen(d->pid));
	free_doc(d);
	ix->live_count--;
	ix->tombstones++;
}

static size_t blob_size(const doc_t *d)
{
	size_t n = ((size_t)d->ncat + d->nattr + d->nterms) * sizeof(uint32_t) +
	           (size_t)d->nterms * (sizeof(uint16_t) + 1);
	return (n + 7) & ~(size_t)7;
}

static void layout(doc_t *d, void *blob)
{
	d->blob = blob;
	d->cats = blob;
	d->attrv = d->cats + d->ncat;
	d->terms = d->attrv + d->nattr;
	d->imp = (uint16_t *)(d->terms + d->nterms);
	d->tflags = (uint8_t *)(d->imp + d->nterms);
}

static int build_doc(es_index *ix, const es_doc *in, doc_t *d)
{
	const es_config *c = &ix->cfg;
	memset(d, 0, sizeof *d);
	uint32_t store = named_intern(&ix->store_map, &ix->stores, &ix->nstores, &ix->stores_cap,
	                              in->store_id);
	if (store == ES_NONE)
		return ES_ENOMEM;
	uint32_t cats[ES_MAX_CATEGORY_DEPTH], ncat = 0;
	for (size_t i = 0; i < in->category_count; i++) {
		uint32_t cid = named_intern(&ix->cat_map, &ix->cats, &ix->ncats, &ix->cats_cap,
		                            in->category_path[i]);
		if (cid == ES_NONE)
			return ES_ENOMEM;
		bool dup = false;
		for (uint32_t j = 0; j < ncat; j++)
			dup |= cats[j] == cid;
		if (!dup)
			cats[ncat++] = cid;
	}
	uint32_t attrv[ES_MAX_ATTRS];
	for (size_t i = 0; i < in->attr_count; i++) {
		uint32_t k = akey_intern(ix, in->attrs[i].key);
		if (k == ES_NONE)
			return ES_ENOMEM;
		attrv[i] = aval_intern(ix, k, in->attrs[i].value);
		if (attrv[i] == ES_NONE)
			return ES_ENOMEM;
	}

	tok_ctx tc = {.ix = ix};
	uint32_t len[3];
	tc.field = TF_TITLE;
	es_tokenize(in->title, collect, &tc);
	len[0] = tc.field_len;
	tc.field = TF_ATTR;
	tc.field_len = 0;
	for (size_t i = 0; i < in->attr_count && !tc.err; i++)
		es_tokenize(in->attrs[i].value, collect, &tc);
	len[1] = tc.field_len;
	tc.field = TF_DESC;
	tc.field_len = 0;
	if (!tc.err)
		es_tokenize(in->description, collect, &tc);
	len[2] = tc.field_len;
	if (tc.err) {
		free(tc.refs);
		return tc.err;
	}
	/* qsort may not be given a NULL array, even an empty one. */
	if (tc.n > 1)
		qsort(tc.refs, tc.n, sizeof *tc.refs, ref_cmp);
	size_t nterms = 0;
	for (size_t i = 0; i < tc.n; i++)
		if (i == 0 || tc.refs[i].term != tc.refs[i - 1].term)
			nterms++;
	if (nterms > ES_MAX_DOC_TERMS) {
		free(tc.refs);
		return ES_ELIMIT;
	}

	d->ncat = (uint8_t)ncat;
	d->nattr = (uint8_t)in->attr_count;
	d->nterms = (uint16_t)nterms;
	size_t sz = blob_size(d);
	d->blob = malloc(sz ? sz : 1);
	d->pid = strdup(in->product_id);
	d->title = strdup(in->title);
	if (!d->blob || !d->pid || !d->title) {
		free(tc.refs);
		free_doc(d);
		return ES_ENOMEM;
	}
	layout(d, d->blob);
	memcpy(d->cats, cats, ncat * sizeof *cats);
	memcpy(d->attrv, attrv, in->attr_count * sizeof *attrv);
	size_t k = 0;
	for (size_t i = 0; i < tc.n;) {
		uint32_t t = tc.refs[i].term, tf[3] = {0, 0, 0};
		uint8_t flags = 0;
		for (; i < tc.n && tc.refs[i].term == t; i++) {
			uint8_t f = tc.refs[i].field;
			flags |= f;
			tf[f == TF_TITLE ? 0 : f == TF_ATTR ? 1 : 2]++;
		}
		float imp = c->title_weight * field_tf(c, tf[0], len[0], c->title_ref_len) +
		            c->attr_weight * field_tf(c, tf[1], len[1], c->attr_ref_len) +
		            c->desc_weight * field_tf(c, tf[2], len[2], c->desc_ref_len);
		long q = lroundf(imp / ES_IMP_SCALE);
		d->terms[k] = t;
		d->imp[k] = (uint16_t)(q < 1 ? 1 : q > 65535 ? 65535 : q);
		d->tflags[k] = flags;
		k++;
	}
	free(tc.refs);
	d->store = store;
	memcpy(d->currency, in->currency, 3);
	d->price = in->price;
	d->stock = in->stock;
	d->created = in->created;
	d->rating = in->rating;
	d->rating_count = in->rating_count;
	d->sales = in->sales;
	d->stat = static_score(ix, in);
	return ES_OK;
}

int es_upsert(es_index *ix, const es_doc *in)
{
	int rc = validate(in);
	if (rc != ES_OK)
		return rc;
	pthread_rwlock_wrlock(&ix->lock);
	doc_t nd;
	rc = build_doc(ix, in, &nd);
	if (rc != ES_OK)
		goto out;
	if (ix->ndocs == UINT32_MAX - 1) {
		free_doc(&nd);
		rc = ES_ELIMIT;
		goto out;
	}
	if (ix->ndocs == ix->cap) {
		uint32_t nc = ix->cap ? ix->cap * 2 : 1024;
		doc_t *na = realloc(ix->docs, nc * sizeof *na);
		if (na)
			ix->docs = na;
		frec *nf = na ? realloc(ix->frecs, nc * sizeof *nf) : NULL;
		if (!nf) {
			free_doc(&nd);
			rc = ES_ENOMEM;
			goto out;
		}
		ix->frecs = nf;
		ix->cap = nc;
	}
	size_t plen = strlen(in->product_id);
	uint32_t old = strmap_get(&ix->pids, in->product_id, plen);
	uint32_t id = ix->ndocs;
	ix->docs[id] = nd;
	rc = attach_buckets(ix, id);
	if (rc == ES_OK && old == ES_NONE && !strmap_put(&ix->pids, in->product_id, plen, id)) {
		bcol_remove(&ix->price, es_price_key(nd.price), id);
		bcol_remove(&ix->created, es_created_key(nd.created), id);
		bcol_remove(&ix->rating, es_rating_key(nd.rating), id);
		rc = ES_ENOMEM;
	}
	if (rc != ES_OK) {
		free_doc(&ix->docs[id]);
		goto out;
	}
	/* From here nothing can fail: the old version goes, the new one comes. */
	if (old != ES_NONE) {
		detach(ix, old, false);
		strmap_set(&ix->pids, in->product_id, plen, id);
	}
	ix->ndocs++;
	ix->live_count++;
	ix->gen++;
	attach(ix, id, true);
out:
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

int es_remove(es_index *ix, const char *pid)
{
	if (!id_ok(pid))
		return ES_EINVAL;
	pthread_rwlock_wrlock(&ix->lock);
	uint32_t id = strmap_get(&ix->pids, pid, strlen(pid));
	int rc = ES_ENOTFOUND;
	if (id != ES_NONE) {
		detach(ix, id, true);
		ix->gen++;
		rc = ES_OK;
	}
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

/* ---- optimize ------------------------------------------------------- */

/* Every term's postings at once: count, place each id in its term's run
 * (ids ascending), then one add_many per bitmap — several times faster than
 * one add per posting. False (nothing done) if the scratch does not fit. */
static bool rebuild_postings(es_index *ix)
{
	uint32_t nt = ix->lex.nterms;
	size_t *off = calloc((size_t)nt + 1, sizeof *off);
	size_t *toff = calloc((size_t)nt + 1, sizeof *toff);
	uint32_t *ids = NULL, *tids = NULL;
	if (!off || !toff)
		goto fail;
	for (uint32_t id = 0; id < ix->ndocs; id++) {
		const doc_t *d = &ix->docs[id];
		for (uint16_t i = 0; i < d->nterms; i++) {
			off[d->terms[i] + 1]++;
			if (d->tflags[i] & TF_TITLE)
				toff[d->terms[i] + 1]++;
		}
	}
	for (uint32_t t = 0; t < nt; t++) {
		off[t + 1] += off[t];
		toff[t + 1] += toff[t];
	}
	ids = malloc((off[nt] ? off[nt] : 1) * sizeof *ids);
	tids = malloc((toff[nt] ? toff[nt] : 1) * sizeof *tids);
	if (!ids || !tids)
		goto fail;
	for (uint32_t id = 0; id < ix->ndocs; id++) {
		const doc_t *d = &ix->docs[id];
		for (uint16_t i = 0; i < d->nterms; i++) {
			uint32_t t = d->terms[i];
			ids[off[t]++] = id;
			if (d->tflags[i] & TF_TITLE)
				tids[toff[t]++] = id;
			float imp = (float)d->imp[i] * ES_IMP_SCALE;
			if (imp > ix->lex.terms[t].max_impact)
				ix->lex.terms[t].max_impact = imp;
		}
	}
	/* off[t] now ends term t's run, which starts where t-1's ended. */
	for (uint32_t t = 0; t < nt; t++) {
		size_t a = t ? off[t - 1] : 0, ta = t ? toff[t - 1] : 0;
		roaring_bitmap_add_many(ix->lex.terms[t].docs, off[t] - a, ids + a);
		roaring_bitmap_add_many(ix->lex.terms[t].title, toff[t] - ta, tids + ta);
	}
	free(off);
	free(toff);
	free(ids);
	free(tids);
	return true;
fail:
	free(off);
	free(toff);
	free(ids);
	free(tids);
	return false;
}

static int by_static(const void *a, const void *b)
{
	const doc_t *x = a, *y = b;
	if (x->stat != y->stat)
		return x->stat > y->stat ? -1 : 1;
	return strcmp(x->pid, y->pid);
}

static void clear_bcol(bcol *c)
{
	for (uint32_t i = 0; i < c->n; i++)
		roaring_bitmap_clear(c->b[i].bm);
}

static void drop_empty_buckets(bcol *c)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < c->n; i++) {
		if (roaring_bitmap_is_empty(c->b[i].bm))
			bm_free(c->b[i].bm);
		else
			c->b[k++] = c->b[i];
	}
	c->n = k;
}

static void tidy(roaring_bitmap_t *b)
{
	roaring_bitmap_run_optimize(b);
	roaring_bitmap_shrink_to_fit(b);
}

int es_optimize(es_index *ix)
{
	pthread_rwlock_wrlock(&ix->lock);
	/* Compact live documents to the front, then order them. */
	uint32_t n = 0;
	for (uint32_t i = 0; i < ix->ndocs; i++)
		if (ix->docs[i].pid)
			ix->docs[n++] = ix->docs[i];
	if (n > 1)
		qsort(ix->docs, n, sizeof *ix->docs, by_static);
	ix->ndocs = n;
	ix->tombstones = 0;
	ix->sorted_upto = n;
	ix->gen++;
	/* The slab: first every document's categories and attribute values
	 * (what a facet pass reads, a few documents per cache line), then
	 * the term arrays, both in id order. */
	size_t fsize = 0, total = 0;
	for (uint32_t id = 0; id < n; id++) {
		fsize += ((size_t)ix->docs[id].ncat + ix->docs[id].nattr) * sizeof(uint32_t);
		total += blob_size(&ix->docs[id]);
	}
	fsize = (fsize + 7) & ~(size_t)7;
	unsigned char *slab = malloc(fsize + total + 1);
	if (slab) {
		/* Without the slab the index works the same, only slower. */
		uint32_t *fp = (uint32_t *)slab;
		unsigned char *tp = slab + fsize;
		for (uint32_t id = 0; id < n; id++) {
			doc_t *d = &ix->docs[id];
			memcpy(fp, d->cats, d->ncat * sizeof *fp);
			memcpy(fp + d->ncat, d->attrv, d->nattr * sizeof *fp);
			size_t tsz = (size_t)d->nterms * sizeof(uint32_t);
			memcpy(tp, d->terms, tsz);
			memcpy(tp + tsz, d->imp, d->nterms * sizeof(uint16_t));
			memcpy(tp + tsz + d->nterms * sizeof(uint16_t), d->tflags, d->nterms);
			if (!d->in_slab)
				free(d->blob);
			d->blob = NULL;
			d->cats = fp;
			d->attrv = fp + d->ncat;
			fp += d->ncat + d->nattr;
			d->terms = (uint32_t *)tp;
			d->imp = (uint16_t *)(tp + tsz);
			d->tflags = tp + tsz + d->nterms * sizeof(uint16_t);
			tp += (tsz + d->nterms * 3 + 7) & ~(size_t)7;
			d->in_slab = true;
		}
		free(ix->slab);
		ix->slab = slab;
	}

	for (uint32_t t = 0; t < ix->lex.nterms; t++) {
		roaring_bitmap_clear(ix->lex.terms[t].docs);
		roaring_bitmap_clear(ix->lex.terms[t].title);
		ix->lex.terms[t].max_impact = 0.0f;
		es_fc_free(ix->lex.terms[t].fc);
		ix->lex.terms[t].fc = NULL;
	}
	for (uint32_t i = 0; i < ix->nstores; i++)
		roaring_bitmap_clear(ix->stores[i].bm);
	for (uint32_t i = 0; i < ix->ncats; i++)
		roaring_bitmap_clear(ix->cats[i].bm);
	for (uint32_t i = 0; i < ix->nakeys; i++)
		roaring_bitmap_clear(ix->akeys[i].bm);
	for (uint32_t i = 0; i < ix->navals; i++)
		roaring_bitmap_clear(ix->avals[i].bm);
	roaring_bitmap_clear(ix->live);
	roaring_bitmap_clear(ix->instock);
	clear_bcol(&ix->price);
	clear_bcol(&ix->created);
	clear_bcol(&ix->rating);
	int rc = ES_OK;
	bool bulk = rebuild_postings(ix);
	for (uint32_t id = 0; id < n; id++) {
		doc_t *d = &ix->docs[id];
		strmap_set(&ix->pids, d->pid, strlen(d->pid), id);
		attach(ix, id, !bulk);
		/* Every bucket a live document needs exists already. */
		if (attach_buckets(ix, id) != ES_OK)
			rc = ES_ENOMEM;
	}
	/* Kept facet counts for the words in 1/64 of the index or more. */
	for (uint32_t t = 0; t < ix->lex.nterms; t++) {
		term_t *tm = &ix->lex.terms[t];
		uint64_t df = roaring_bitmap_get_cardinality(tm->docs);
		if (df < 64 || df * 64 < n)
			continue;
		tm->fc = calloc(1, sizeof *tm->fc);
		if (!tm->fc)
			continue;
		roaring_uint32_iterator_t it;
		roaring_init_iterator(tm->docs, &it);
		uint32_t buf[256], got;
		bool ok = true;
		while (ok && (got = roaring_read_uint32_iterator(&it, buf, 256)) > 0)
			for (uint32_t j = 0; ok && j < got; j++)
				ok = es_fc_apply(ix, tm->fc, buf[j], 1);
		if (!ok) {
			es_fc_free(tm->fc);
			tm->fc = NULL;
		}
	}
	drop_empty_buckets(&ix->price);
	drop_empty_buckets(&ix->created);
	drop_empty_buckets(&ix->rating);
	for (uint32_t t = 0; t < ix->lex.nterms; t++) {
		tidy(ix->lex.terms[t].docs);
		tidy(ix->lex.terms[t].title);
	}
	for (uint32_t i = 0; i < ix->nstores; i++)
		tidy(ix->stores[i].bm);
	for (uint32_t i = 0; i < ix->ncats; i++)
		tidy(ix->cats[i].bm);
	for (uint32_t i = 0; i < ix->nakeys; i++)
		tidy(ix->akeys[i].bm);
	for (uint32_t i = 0; i < ix->navals; i++)
		tidy(ix->avals[i].bm);
	tidy(ix->live);
	tidy(ix->instock);
	for (uint32_t i = 0; i < ix->price.n; i++)
		tidy(ix->price.b[i].bm);
	for (uint32_t i = 0; i < ix->created.n; i++)
		tidy(ix->created.b[i].bm);
	for (uint32_t i = 0; i < ix->rating.n; i++)
		tidy(ix->rating.b[i].bm);
	pthread_rwlock_unlock(&ix->lock);
	return rc;
}

/* ---- stats ---------------------------------------------------------- */

void es_get_stats(es_index *ix, es_stats *out)
{
	pthread_rwlock_rdlock(&ix->lock);
	out->docs = ix->live_count;
	out->tail_docs =
	        ix->ndocs > ix->sorted_upto
	                ? roaring_bitmap_range_cardinality(ix->live, ix->sorted_upto, ix->ndocs)
	                : 0;
	out->tombstones = ix->tombstones;
	out->terms = ix->lex.nterms;
	size_t m = es_heap_size(ix) + es_heap_size(ix->docs) + es_heap_size(ix->frecs) +
	           es_heap_size(ix->slab) + strmap_memory(&ix->pids) + lex_memory(&ix->lex);
	for (uint32_t i = 0; i < ix->ndocs; i++) {
		const doc_t *d = &ix->docs[i];
		m += es_heap_size(d->pid) + es_heap_size(d->title) +
		     (d->in_slab ? 0 : es_heap_size(d->blob));
	}
	m += strmap_memory(&ix->store_map) + es_heap_size(ix->stores);
	for (uint32_t i = 0; i < ix->nstores; i++)
		m += es_bitmap_memory(ix->stores[i].bm);
	m += strmap_memory(&ix->cat_map) + es_heap_size(ix->cats);
	for (uint32_t i = 0; i < ix->ncats; i++)
		m += es_bitmap_memory(ix->cats[i].bm);
	m += strmap_memory(&ix->akey_map) + es_heap_size(ix->akeys);
	for (uint32_t i = 0; i < ix->nakeys; i++)
		m += es_bitmap_memory(ix->akeys[i].bm) + es_heap_size(ix->akeys[i].values.ids);
	m += strmap_memory(&ix->aval_map) + es_heap_size(ix->avals);
	for (uint32_t i = 0; i < ix->navals; i++)
		m += es_bitmap_memory(ix->avals[i].bm);
	m += es_bitmap_memory(ix->live) + es_bitmap_memory(ix->instock);
	for (uint32_t t = 0; t < ix->lex.nterms; t++) {
		const tfacets *fc = ix->lex.terms[t].fc;
		if (fc)
			m += es_heap_size(fc) + es_heap_size(fc->cc) + es_heap_size(fc->sc) +
			     es_heap_size(fc->vc) + es_heap_size(fc->kc);
	}
	pthread_mutex_lock(&ix->cache_lock);
	m += es_heap_size(ix->cache);
	for (uint32_t i = 0; ix->cache && i < ix->cfg.facet_cache_entries; i++)
		m += arena_memory(&ix->cache[i].mem);
	pthread_mutex_unlock(&ix->cache_lock);
	m += bcol_memory(&ix->price) + bcol_memory(&ix->created) + bcol_memory(&ix->rating);
	out->memory_bytes = m;
	pthread_rwlock_unlock(&ix->lock);
}
