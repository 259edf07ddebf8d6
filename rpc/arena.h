/*
 * arena.h - per-call bump allocator.
 *
 * Everything a call decodes, builds and encodes is allocated here and freed
 * at once when the call ends, so handlers never free what they allocate.
 * Not thread-safe: one call is served by one thread at a time.
 */
#ifndef ESTORE_RPC_ARENA_H
#define ESTORE_RPC_ARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct rpc_arena rpc_arena;

/* first_block: bytes of the first chunk (0 = a default). NULL on no memory. */
rpc_arena *rpc_arena_new(size_t first_block);
/* Frees every allocation and the arena. rpc_arena_free(NULL) is a no-op. */
void rpc_arena_free(rpc_arena *a);
/* Frees every allocation but keeps the first chunk for reuse. */
void rpc_arena_reset(rpc_arena *a);

/* 16-byte aligned memory valid until reset/free, NULL on no memory.
 * Large requests get their own chunk. */
void *rpc_arena_alloc(rpc_arena *a, size_t size);
void *rpc_arena_calloc(rpc_arena *a, size_t n, size_t size);
char *rpc_arena_strdup(rpc_arena *a, const char *s);
char *rpc_arena_strndup(rpc_arena *a, const char *s, size_t n);
char *rpc_arena_sprintf(rpc_arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Bytes handed out so far (for tests and limits). */
size_t rpc_arena_used(const rpc_arena *a);

/* A protobuf-c allocator drawing from the arena; its free is a no-op. */
void rpc_arena_pb_allocator(rpc_arena *a, ProtobufCAllocator *out);

#endif
