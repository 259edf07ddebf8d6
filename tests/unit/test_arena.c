/*
 * test_arena.c - per-call bump allocator and its protobuf-c adapter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/arena.h"

static void assert_aligned(const void *p)
{
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % 16, 0);
}

static void test_new_free(void **state)
{
	(void)state;
	rpc_arena_free(NULL);
	rpc_arena *a = rpc_arena_new(0);
	assert_non_null(a);
	assert_int_equal(rpc_arena_used(a), 0);
	rpc_arena_free(a);
	a = rpc_arena_new(64);
	assert_non_null(a);
	rpc_arena_free(a);
}

static void test_alignment(void **state)
{
	rpc_arena *a = rpc_arena_new(256);
	(void)state;
	/* Odd sizes back to back, across several chunks. */
	for (size_t i = 1; i < 500; i++) {
		unsigned char *p = rpc_arena_alloc(a, i % 23 + 1);
		assert_aligned(p);
		memset(p, 0x5a, i % 23 + 1);
	}
	assert_aligned(rpc_arena_alloc(a, 0));
	rpc_arena_free(a);
}

static void test_allocations_do_not_overlap(void **state)
{
	enum { N = 300 };
	unsigned char *ptrs[N];
	size_t sizes[N];
	rpc_arena *a = rpc_arena_new(128);
	(void)state;

	for (size_t i = 0; i < N; i++) {
		sizes[i] = (i * 37) % 200 + 1;
		ptrs[i] = rpc_arena_alloc(a, sizes[i]);
		assert_non_null(ptrs[i]);
		memset(ptrs[i], (int)(i & 0xff), sizes[i]);
	}
	/* Each block still holds its own pattern: no block was handed out
	 * twice or overlaps a neighbour. */
	for (size_t i = 0; i < N; i++)
		for (size_t k = 0; k < sizes[i]; k++)
			assert_int_equal(ptrs[i][k], i & 0xff);
	rpc_arena_free(a);
}

static void test_zero_size_distinct(void **state)
{
	rpc_arena *a = rpc_arena_new(0);
	(void)state;
	void *p = rpc_arena_alloc(a, 0);
	void *q = rpc_arena_alloc(a, 0);
	assert_non_null(p);
	assert_non_null(q);
	assert_ptr_not_equal(p, q);
	rpc_arena_free(a);
}

static void test_large_allocations(void **state)
{
	rpc_arena *a = rpc_arena_new(1024);
	(void)state;

	char *small1 = rpc_arena_alloc(a, 16);
	/* Far bigger than any chunk: gets its own, fully usable. */
	size_t big = 5u * 1024 * 1024;
	unsigned char *b = rpc_arena_alloc(a, big);
	assert_aligned(b);
	memset(b, 0xee, big);
	assert_int_equal(b[big - 1], 0xee);
	/* The small allocation after it still comes from the first chunk:
	 * a big block must not waste the current chunk. */
	char *small2 = rpc_arena_alloc(a, 16);
	assert_aligned(small2);
	assert_true(small2 > small1 && small2 < small1 + 1024);
	for (int i = 0; i < 10; i++) {
		void *p = rpc_arena_alloc(a, 100000 + (size_t)i);
		assert_aligned(p);
		memset(p, i, 100000 + (size_t)i);
	}
	assert_true(rpc_arena_used(a) >= big + 32 + 10 * 100000);
	rpc_arena_free(a); /* ASan checks every chunk is released */
}

static void test_used(void **state)
{
	rpc_arena *a = rpc_arena_new(0);
	(void)state;
	rpc_arena_alloc(a, 10);
	assert_int_equal(rpc_arena_used(a), 10);
	rpc_arena_alloc(a, 7);
	assert_int_equal(rpc_arena_used(a), 17);
	rpc_arena_alloc(a, 10000);
	assert_int_equal(rpc_arena_used(a), 10017);
	rpc_arena_free(a);
}

static void test_reset_reuses_first_chunk(void **state)
{
	rpc_arena *a = rpc_arena_new(512);
	(void)state;

	void *first = rpc_arena_alloc(a, 32);
	for (int i = 0; i < 100; i++)
		assert_non_null(rpc_arena_alloc(a, 200));
	assert_non_null(rpc_arena_alloc(a, 1 << 20));
	rpc_arena_reset(a);
	assert_int_equal(rpc_arena_used(a), 0);
	/* Allocation starts over at the beginning of the kept chunk. */
	void *again = rpc_arena_alloc(a, 32);
	assert_ptr_equal(again, first);
	/* And the arena keeps working past the first chunk after a reset. */
	for (int i = 0; i < 100; i++) {
		char *p = rpc_arena_alloc(a, 300);
		assert_aligned(p);
		memset(p, 1, 300);
	}
	rpc_arena_reset(a);
	rpc_arena_reset(a);
	rpc_arena_reset(NULL);
	rpc_arena_free(a);
}

static void test_arena_calloc(void **state)
{
	rpc_arena *a = rpc_arena_new(256);
	(void)state;

	/* Dirty memory first, then reset so calloc gets the same bytes. */
	memset(rpc_arena_alloc(a, 200), 0xff, 200);
	rpc_arena_reset(a);
	uint32_t *v = rpc_arena_calloc(a, 50, sizeof(uint32_t));
	assert_aligned(v);
	for (int i = 0; i < 50; i++)
		assert_int_equal(v[i], 0);
	/* n * size overflowing size_t is refused, not wrapped. */
	assert_null(rpc_arena_calloc(a, SIZE_MAX / 2, 4));
	rpc_arena_free(a);
}

static void test_strings(void **state)
{
	rpc_arena *a = rpc_arena_new(0);
	(void)state;

	char *s = rpc_arena_strdup(a, "hello");
	assert_string_equal(s, "hello");
	assert_string_equal(rpc_arena_strndup(a, "hello world", 5), "hello");
	/* n beyond the string copies only the string. */
	assert_string_equal(rpc_arena_strndup(a, "hi", 100), "hi");
	assert_string_equal(rpc_arena_strndup(a, "abc", 0), "");
	assert_string_equal(rpc_arena_sprintf(a, "%s-%d-%05.1f", "id", 42, 3.14),
			    "id-42-003.1");
	/* Longer than the first chunk. */
	char *big = rpc_arena_sprintf(a, "%9000d|", 7);
	assert_non_null(big);
	assert_int_equal(strlen(big), 9001);
	assert_int_equal(big[8999], '7');
	assert_int_equal(big[9000], '|');
	rpc_arena_free(a);
}

static void test_pb_allocator(void **state)
{
	ProtobufCAllocator al;
	rpc_arena *a = rpc_arena_new(0);
	(void)state;

	rpc_arena_pb_allocator(a, &al);
	assert_ptr_equal(al.allocator_data, a);
	assert_non_null(al.alloc);
	assert_non_null(al.free);

	void *p = al.alloc(al.allocator_data, 40);
	assert_aligned(p);
	memset(p, 0, 40);
	assert_int_equal(rpc_arena_used(a), 40);
	void *q = al.alloc(al.allocator_data, 1 << 16);
	assert_aligned(q);
	/* free is a no-op: the memory stays valid and accounted until the
	 * arena goes. */
	al.free(al.allocator_data, p);
	al.free(al.allocator_data, NULL);
	memset(p, 1, 40);
	assert_int_equal(rpc_arena_used(a), 40 + (1 << 16));
	rpc_arena_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_free),
		cmocka_unit_test(test_alignment),
		cmocka_unit_test(test_allocations_do_not_overlap),
		cmocka_unit_test(test_zero_size_distinct),
		cmocka_unit_test(test_large_allocations),
		cmocka_unit_test(test_used),
		cmocka_unit_test(test_reset_reuses_first_chunk),
		cmocka_unit_test(test_arena_calloc),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_pb_allocator),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
