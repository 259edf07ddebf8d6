/* A string map and a bump arena, the two containers the index is built of. */
#include "internal.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

uint32_t es_hash(const char *s, size_t n)
{
	/* FNV-1a with a final avalanche: keys are short words and ids. */
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	h ^= h >> 16;
	h *= 0x7feb352du;
	h ^= h >> 15;
	return h;
}

static bool key_eq(const char *k, const char *s, size_t n)
{
	return strncmp(k, s, n) == 0 && k[n] == '\0';
}

uint32_t strmap_get(const strmap *m, const char *s, size_t n)
{
	if (m->cap == 0)
		return ES_NONE;
	uint32_t h = es_hash(s, n), mask = m->cap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		if (!m->keys[i])
			return ES_NONE;
		if (m->hashes[i] == h && key_eq(m->keys[i], s, n))
			return m->vals[i];
	}
}

static bool strmap_grow(strmap *m)
{
	uint32_t ncap = m->cap ? m->cap * 2 : 16;
	char **keys = calloc(ncap, sizeof *keys);
	uint32_t *vals = malloc(ncap * sizeof *vals);
	uint32_t *hashes = malloc(ncap * sizeof *hashes);
	if (!keys || !vals || !hashes) {
		free(keys);
		free(vals);
		free(hashes);
		return false;
	}
	for (uint32_t i = 0; i < m->cap; i++) {
		if (!m->keys[i])
			continue;
		uint32_t j = m->hashes[i] & (ncap - 1);
		while (keys[j])
			j = (j + 1) & (ncap - 1);
		keys[j] = m->keys[i];
		vals[j] = m->vals[i];
		hashes[j] = m->hashes[i];
	}
	free(m->keys);
	free(m->vals);
	free(m->hashes);
	m->keys = keys;
	m->vals = vals;
	m->hashes = hashes;
	m->cap = ncap;
	return true;
}

char *strmap_put(strmap *m, const char *s, size_t n, uint32_t v)
{
	if ((m->len + 1) * 4 > m->cap * 3 && !strmap_grow(m))
		return NULL;
	char *k = malloc(n + 1);
	if (!k)
		return NULL;
	memcpy(k, s, n);
	k[n] = '\0';
	uint32_t h = es_hash(s, n), mask = m->cap - 1, i = h & mask;
	while (m->keys[i])
		i = (i + 1) & mask;
	m->keys[i] = k;
	m->vals[i] = v;
	m->hashes[i] = h;
	m->len++;
	return k;
}

static uint32_t slot_of(const strmap *m, const char *s, size_t n)
{
	if (m->cap == 0)
		return ES_NONE;
	uint32_t h = es_hash(s, n), mask = m->cap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		if (!m->keys[i])
			return ES_NONE;
		if (m->hashes[i] == h && key_eq(m->keys[i], s, n))
			return i;
	}
}

void strmap_set(strmap *m, const char *s, size_t n, uint32_t v)
{
	uint32_t i = slot_of(m, s, n);
	if (i != ES_NONE)
		m->vals[i] = v;
}

void strmap_del(strmap *m, const char *s, size_t n)
{
	uint32_t i = slot_of(m, s, n), mask = m->cap - 1;
	if (i == ES_NONE)
		return;
	free(m->keys[i]);
	m->keys[i] = NULL;
	m->len--;
	/* Backward shift: pull later members of the probe run into the hole so
	 * lookups never need tombstones. */
	for (uint32_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
		uint32_t home = m->hashes[j] & mask;
		bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
		if (!movable)
			continue;
		m->keys[i] = m->keys[j];
		m->vals[i] = m->vals[j];
		m->hashes[i] = m->hashes[j];
		m->keys[j] = NULL;
		i = j;
	}
}

void strmap_free(strmap *m)
{
	for (uint32_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	free(m->hashes);
	memset(m, 0, sizeof *m);
}

size_t strmap_memory(const strmap *m)
{
	size_t n = es_heap_size(m->keys) + es_heap_size(m->vals) + es_heap_size(m->hashes);
	for (uint32_t i = 0; i < m->cap; i++)
		if (m->keys[i])
			n += es_heap_size(m->keys[i]);
	return n;
}

struct arena_block {
	arena_block *next;
	size_t used, size;
	_Alignas(16) unsigned char data[];
};

void *arena_alloc(arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	arena_block *b = a->head;
	if (!b || b->size - b->used < n) {
		size_t size = n > 8192 ? n : 8192;
		b = malloc(sizeof *b + size);
		if (!b)
			return NULL;
		b->size = size;
		b->used = 0;
		b->next = a->head;
		a->head = b;
	}
	void *p = b->data + b->used;
	b->used += n;
	memset(p, 0, n);
	return p;
}

char *arena_strdup(arena *a, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = arena_alloc(a, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

void arena_free(arena *a)
{
	while (a->head) {
		arena_block *n = a->head->next;
		free(a->head);
		a->head = n;
	}
}

size_t es_heap_size(const void *p)
{
	/* The usable size plus glibc's chunk header: what the allocation costs. */
	return p ? malloc_usable_size((void *)p) + sizeof(size_t) : 0;
}

size_t es_bitmap_memory(const roaring_bitmap_t *b)
{
	if (!b)
		return 0;
	roaring_statistics_t st;
	roaring_bitmap_statistics(b, &st);
	/* The container payloads, each container's header (16-24 bytes, counted
	 * as 24), the top-level arrays (key, type, pointer per container) and the
	 * bitmap struct. */
	return (size_t)st.n_bytes_array_containers + st.n_bytes_run_containers +
	       st.n_bytes_bitset_containers + (size_t)b->high_low_container.allocation_size * 11 +
	       (size_t)st.n_containers * 24 + sizeof *b;
}

size_t arena_memory(const arena *a)
{
	size_t n = 0;
	for (const arena_block *b = a->head; b; b = b->next)
		n += es_heap_size(b);
	return n;
}
