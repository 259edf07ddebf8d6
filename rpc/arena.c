/*
 * arena.c - chunked bump allocator for per-call memory.
 */
#include "rpc/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 16
#define DEFAULT_FIRST_BLOCK 4096
/* Growth stops here: per-call arenas that need more than a few chunks of
 * this size are rare, and doubling without bound wastes up to half. */
#define MAX_CHUNK (256 * 1024)

struct chunk {
	struct chunk *next;
	size_t cap;  /* usable bytes after the header */
	size_t used; /* bytes consumed from data, including alignment padding */
	/* Forces the header to a multiple of 16 so data starts aligned too. */
	_Alignas(ARENA_ALIGN) unsigned char data[];
};

struct rpc_arena {
	struct chunk *cur;    /* chunk new small allocations come from */
	struct chunk *extra;  /* every chunk but the first, for freeing */
	size_t used;          /* bytes handed out, as requested */
	size_t next_size;     /* capacity of the next regular chunk */
	struct chunk *first;  /* kept by reset; lives right after this struct */
};

/* Offset of the first chunk inside the arena's own allocation. */
#define FIRST_OFF \
	((sizeof(rpc_arena) + _Alignof(struct chunk) - 1) & \
	 ~(_Alignof(struct chunk) - 1))

rpc_arena *rpc_arena_new(size_t first_block)
{
	if (!first_block)
		first_block = DEFAULT_FIRST_BLOCK;
	if (first_block > SIZE_MAX - FIRST_OFF - sizeof(struct chunk))
		return NULL;

	/* The first chunk lives in the same allocation as the arena: a call
	 * whose data fits in it costs exactly one malloc. */
	rpc_arena *a = malloc(FIRST_OFF + sizeof(struct chunk) + first_block);
	if (!a)
		return NULL;
	a->first = (struct chunk *)((char *)a + FIRST_OFF);
	a->first->next = NULL;
	a->first->cap = first_block;
	a->first->used = 0;
	a->cur = a->first;
	a->extra = NULL;
	a->used = 0;
	a->next_size = first_block < MAX_CHUNK / 2 ? first_block * 2 : MAX_CHUNK;
	return a;
}

static void free_extra(rpc_arena *a)
{
	struct chunk *c = a->extra;
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	a->extra = NULL;
}

void rpc_arena_free(rpc_arena *a)
{
	if (!a)
		return;
	free_extra(a);
	free(a);
}

void rpc_arena_reset(rpc_arena *a)
{
	if (!a)
		return;
	free_extra(a);
	a->first->used = 0;
	a->cur = a->first;
	a->used = 0;
}

/* Pads by address, not by offset, so alignment holds even if malloc gave
 * the chunk less than 16-byte alignment. */
static void *bump(struct chunk *c, size_t size)
{
	uintptr_t base = (uintptr_t)c->data;
	uintptr_t p = base + c->used;
	size_t pad = (size_t)(-p & (ARENA_ALIGN - 1));

	if (pad > c->cap - c->used || size > c->cap - c->used - pad)
		return NULL;
	c->used += pad + size;
	return c->data + (p + pad - base);
}

static struct chunk *new_chunk(size_t cap)
{
	if (cap > SIZE_MAX - sizeof(struct chunk) - ARENA_ALIGN)
		return NULL;
	/* The extra ARENA_ALIGN absorbs padding should malloc's alignment be
	 * weaker than ours, so a chunk sized for `size` always fits it. */
	struct chunk *c = malloc(sizeof(*c) + cap + ARENA_ALIGN);
	if (!c)
		return NULL;
	c->next = NULL;
	c->cap = cap + ARENA_ALIGN;
	c->used = 0;
	return c;
}

void *rpc_arena_alloc(rpc_arena *a, size_t size)
{
	void *p;

	/* Zero-size requests still get a distinct pointer: protobuf-c and
	 * callers treat NULL as out of memory. */
	if (!size)
		size = 1;

	p = bump(a->cur, size);
	if (p)
		goto out;

	/* A request larger than a quarter of a regular chunk gets a chunk of
	 * its own, kept off the bump path, so one big buffer neither wastes
	 * the rest of the current chunk nor forces chunks to grow. */
	if (size > a->next_size / 4) {
		struct chunk *c = new_chunk(size);
		if (!c)
			return NULL;
		c->next = a->extra;
		a->extra = c;
		p = bump(c, size);
		goto out;
	}

	struct chunk *c = new_chunk(a->next_size);
	if (!c)
		return NULL;
	c->next = a->extra;
	a->extra = c;
	a->cur = c;
	if (a->next_size < MAX_CHUNK)
		a->next_size *= 2;
	p = bump(c, size);
out:
	a->used += size;
	return p;
}

void *rpc_arena_calloc(rpc_arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	void *p = rpc_arena_alloc(a, n * size);
	if (p)
		memset(p, 0, n * size);
	return p;
}

char *rpc_arena_strdup(rpc_arena *a, const char *s)
{
	return rpc_arena_strndup(a, s, strlen(s));
}

char *rpc_arena_strndup(rpc_arena *a, const char *s, size_t n)
{
	n = strnlen(s, n);
	if (n == SIZE_MAX)
		return NULL;
	char *p = rpc_arena_alloc(a, n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *rpc_arena_sprintf(rpc_arena *a, const char *fmt, ...)
{
	va_list ap, ap2;
	char *p = NULL;

	va_start(ap, fmt);
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap);
	if (n < 0)
		goto out;
	p = rpc_arena_alloc(a, (size_t)n + 1);
	if (p)
		vsnprintf(p, (size_t)n + 1, fmt, ap2);
out:
	va_end(ap2);
	va_end(ap);
	return p;
}

size_t rpc_arena_used(const rpc_arena *a)
{
	return a->used;
}

static void *pb_alloc(void *data, size_t size)
{
	return rpc_arena_alloc(data, size);
}

/* protobuf-c frees unpacked messages piecemeal; with an arena the memory
 * goes away at reset/free, so individual frees have nothing to do. */
static void pb_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;
}

void rpc_arena_pb_allocator(rpc_arena *a, ProtobufCAllocator *out)
{
	out->alloc = pb_alloc;
	out->free = pb_free;
	out->allocator_data = a;
}
