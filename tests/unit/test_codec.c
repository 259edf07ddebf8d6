/*
 * test_codec.c - incremental length-prefixed message reader and prefix writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/codec.h"
#include "rpc/status.h"

/* What the callback saw, copied out since `data` is only valid in the call. */
#define MAX_SEEN 64
struct seen {
	size_t count;
	uint8_t *data[MAX_SEEN];
	size_t len[MAX_SEEN];
	bool compressed[MAX_SEEN];
	bool in_chunk[MAX_SEEN]; /* data pointed into the fed chunk */
	const uint8_t *chunk;
	size_t chunk_len;
	int stop_after; /* return stop_value after this many; 0 = never */
	int stop_value;
};

static int on_msg(void *user, const uint8_t *data, size_t len, bool compressed)
{
	struct seen *s = user;
	assert_true(s->count < MAX_SEEN);
	assert_non_null(data);
	s->data[s->count] = malloc(len ? len : 1);
	assert_non_null(s->data[s->count]);
	if (len)
		memcpy(s->data[s->count], data, len);
	s->len[s->count] = len;
	s->compressed[s->count] = compressed;
	s->in_chunk[s->count] = s->chunk && data >= s->chunk &&
				data + len <= s->chunk + s->chunk_len;
	s->count++;
	if (s->stop_after && (int)s->count == s->stop_after)
		return s->stop_value;
	return 0;
}

static int feed(rpc_msg_reader *r, struct seen *s, const uint8_t *p, size_t n)
{
	s->chunk = p;
	s->chunk_len = n;
	return rpc_msg_reader_feed(r, p, n, on_msg, s);
}

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->count; i++)
		free(s->data[i]);
	memset(s, 0, sizeof(*s));
}

/* Appends prefix + payload to buf at *off. */
static void frame(uint8_t *buf, size_t *off, bool compressed, const void *p,
		  uint32_t len)
{
	rpc_msg_prefix(buf + *off, compressed, len);
	if (len)
		memcpy(buf + *off + RPC_MSG_PREFIX_LEN, p, len);
	*off += RPC_MSG_PREFIX_LEN + len;
}

static void test_prefix_layout(void **state)
{
	uint8_t p[RPC_MSG_PREFIX_LEN];
	(void)state;
	rpc_msg_prefix(p, false, 0x01020304);
	assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
	rpc_msg_prefix(p, true, 0);
	assert_memory_equal(p, "\x01\x00\x00\x00\x00", 5);
	rpc_msg_prefix(p, false, UINT32_MAX);
	assert_memory_equal(p, "\x00\xff\xff\xff\xff", 5);
}

static void test_single_message_zero_copy(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[64];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, "hello", 5);
	rpc_msg_reader_init(&r, RPC_DEFAULT_MAX_MSG);
	assert_int_equal(feed(&r, &s, buf, n), 0);
	assert_int_equal(s.count, 1);
	assert_int_equal(s.len[0], 5);
	assert_memory_equal(s.data[0], "hello", 5);
	assert_false(s.compressed[0]);
	assert_true(s.in_chunk[0]);
	assert_false(rpc_msg_reader_partial(&r));
	assert_null(r.buf);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_byte_by_byte(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[1024];
	uint8_t payload[300];
	size_t n = 0;
	(void)state;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	frame(buf, &n, false, payload, sizeof(payload));
	frame(buf, &n, true, "ab", 2);
	frame(buf, &n, false, NULL, 0);

	rpc_msg_reader_init(&r, RPC_DEFAULT_MAX_MSG);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(feed(&r, &s, buf + i, 1), 0);
		/* Mid-message exactly until the last byte of each frame. */
		bool boundary = i + 1 == 305 || i + 1 == 312 || i + 1 == n;
		assert_int_equal(rpc_msg_reader_partial(&r), !boundary);
	}
	assert_int_equal(s.count, 3);
	assert_int_equal(s.len[0], sizeof(payload));
	assert_memory_equal(s.data[0], payload, sizeof(payload));
	assert_false(s.in_chunk[0]);
	assert_int_equal(s.len[1], 2);
	assert_memory_equal(s.data[1], "ab", 2);
	assert_true(s.compressed[1]);
	assert_int_equal(s.len[2], 0);
	assert_false(s.compressed[2]);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_many_messages_one_chunk(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[50 * 16];
	size_t n = 0;
	(void)state;

	for (uint32_t i = 0; i < 50; i++) {
		uint8_t p[8];
		memset(p, (int)i, sizeof(p));
		frame(buf, &n, i % 2, p, i % 9);
	}
	rpc_msg_reader_init(&r, 16);
	assert_int_equal(feed(&r, &s, buf, n), 0);
	assert_int_equal(s.count, 50);
	for (size_t i = 0; i < 50; i++) {
		assert_int_equal(s.len[i], i % 9);
		assert_int_equal(s.compressed[i], i % 2);
		for (size_t k = 0; k < s.len[i]; k++)
			assert_int_equal(s.data[i][k], i);
		/* Empty messages get a shared non-NULL pointer instead. */
		if (s.len[i])
			assert_true(s.in_chunk[i]);
	}
	assert_false(rpc_msg_reader_partial(&r));
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_zero_length_message(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[5];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, NULL, 0);
	rpc_msg_reader_init(&r, 0); /* max 0 still admits empty messages */
	assert_int_equal(feed(&r, &s, buf, n), 0);
	assert_int_equal(s.count, 1);
	assert_int_equal(s.len[0], 0);
	/* And split: the prefix completes at the end of a chunk. */
	assert_int_equal(feed(&r, &s, buf, 3), 0);
	assert_true(rpc_msg_reader_partial(&r));
	assert_int_equal(feed(&r, &s, buf + 3, 2), 0);
	assert_int_equal(s.count, 2);
	assert_int_equal(s.len[1], 0);
	assert_false(rpc_msg_reader_partial(&r));
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_prefix_split_payload_whole(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[32];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, "0123456789", 10);
	rpc_msg_reader_init(&r, 100);
	/* Prefix split 2 + 3; the payload then arrives with the prefix's
	 * tail and is still delivered in place. */
	assert_int_equal(feed(&r, &s, buf, 2), 0);
	assert_int_equal(s.count, 0);
	assert_true(rpc_msg_reader_partial(&r));
	assert_int_equal(feed(&r, &s, buf + 2, n - 2), 0);
	assert_int_equal(s.count, 1);
	assert_memory_equal(s.data[0], "0123456789", 10);
	assert_true(s.in_chunk[0]);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_payload_split_across_chunks(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[64];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, "abcdefghij", 10);
	frame(buf, &n, false, "XYZ", 3);
	rpc_msg_reader_init(&r, 100);
	/* Chunk boundaries at 7 and 20: message 1 assembled, message 2
	 * completed by the last chunk. */
	assert_int_equal(feed(&r, &s, buf, 7), 0);
	assert_true(rpc_msg_reader_partial(&r));
	assert_int_equal(feed(&r, &s, buf + 7, 13), 0);
	assert_int_equal(s.count, 1);
	assert_memory_equal(s.data[0], "abcdefghij", 10);
	assert_true(rpc_msg_reader_partial(&r));
	assert_int_equal(feed(&r, &s, buf + 20, n - 20), 0);
	assert_int_equal(s.count, 2);
	assert_memory_equal(s.data[1], "XYZ", 3);
	assert_false(rpc_msg_reader_partial(&r));
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_exactly_max(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[5 + 100];
	size_t n = 0;
	uint8_t payload[100];
	(void)state;

	memset(payload, 0xab, sizeof(payload));
	frame(buf, &n, false, payload, 100);
	rpc_msg_reader_init(&r, 100);
	/* Split so the reader has to buffer the whole maximum. */
	assert_int_equal(feed(&r, &s, buf, 6), 0);
	assert_int_equal(feed(&r, &s, buf + 6, n - 6), 0);
	assert_int_equal(s.count, 1);
	assert_int_equal(s.len[0], 100);
	assert_memory_equal(s.data[0], payload, 100);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_over_max_rejected_before_alloc(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t prefix[RPC_MSG_PREFIX_LEN];
	(void)state;

	rpc_msg_reader_init(&r, 100);
	rpc_msg_prefix(prefix, false, 101);
	/* Only the prefix is fed: the limit applies to the announced length,
	 * before any payload byte arrives or any buffer exists. */
	assert_int_equal(feed(&r, &s, prefix, sizeof(prefix)), RPC_ERR_TOO_LARGE);
	assert_null(r.buf);
	assert_int_equal(s.count, 0);
	/* Sticky: even a valid message afterwards is refused. */
	uint8_t ok[6];
	size_t n = 0;
	frame(ok, &n, false, "x", 1);
	assert_true(feed(&r, &s, ok, n) < 0);
	assert_int_equal(s.count, 0);
	rpc_msg_reader_dispose(&r);
}

static void test_huge_announced_length(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t prefix[RPC_MSG_PREFIX_LEN];
	(void)state;

	rpc_msg_reader_init(&r, RPC_DEFAULT_MAX_MSG);
	rpc_msg_prefix(prefix, false, UINT32_MAX);
	assert_int_equal(feed(&r, &s, prefix, 5), RPC_ERR_TOO_LARGE);
	assert_null(r.buf);
	rpc_msg_reader_dispose(&r);

	rpc_msg_reader_init(&r, RPC_DEFAULT_MAX_MSG);
	rpc_msg_prefix(prefix, false, RPC_DEFAULT_MAX_MSG + 1);
	assert_int_equal(feed(&r, &s, prefix, 5), RPC_ERR_TOO_LARGE);
	rpc_msg_reader_dispose(&r);
}

static void test_error_after_messages_in_chunk(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[64];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, "ok", 2);
	rpc_msg_prefix(buf + n, false, 1000);
	n += 5;
	rpc_msg_reader_init(&r, 10);
	assert_int_equal(feed(&r, &s, buf, n), RPC_ERR_TOO_LARGE);
	assert_int_equal(s.count, 1);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_compressed_flag_passthrough(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	/* Flags 1 and an out-of-spec 0x80 both reach the callback as
	 * "compressed", which is where the call gets refused; 0 does not. */
	const uint8_t buf[] = { 1, 0, 0, 0, 1, 'x', 0x80, 0, 0, 0, 1, 'y',
				0, 0, 0, 0, 1, 'z' };
	(void)state;

	rpc_msg_reader_init(&r, 10);
	assert_int_equal(feed(&r, &s, buf, sizeof(buf)), 0);
	assert_int_equal(s.count, 3);
	assert_true(s.compressed[0]);
	assert_memory_equal(s.data[0], "x", 1);
	assert_true(s.compressed[1]);
	assert_memory_equal(s.data[1], "y", 1);
	assert_false(s.compressed[2]);
	assert_memory_equal(s.data[2], "z", 1);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_callback_stop_value(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[64];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, "a", 1);
	frame(buf, &n, false, "b", 1);
	frame(buf, &n, false, "c", 1);
	s.stop_after = 2;
	s.stop_value = 42;
	rpc_msg_reader_init(&r, 10);
	assert_int_equal(feed(&r, &s, buf, n), 42);
	/* The third message is not delivered. */
	assert_int_equal(s.count, 2);
	assert_memory_equal(s.data[1], "b", 1);
	/* Bytes after the stop were never consumed, so framing is lost and
	 * the reader refuses further input. */
	assert_true(feed(&r, &s, buf, n) < 0);
	assert_int_equal(s.count, 2);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_callback_stop_on_buffered_message(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[64];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, "hello", 5);
	s.stop_after = 1;
	s.stop_value = -1;
	rpc_msg_reader_init(&r, 10);
	assert_int_equal(feed(&r, &s, buf, 7), 0);
	/* The assembled buffer is released even though the callback
	 * stopped: ASan would report it otherwise. */
	assert_int_equal(feed(&r, &s, buf + 7, n - 7), -1);
	assert_int_equal(s.count, 1);
	assert_memory_equal(s.data[0], "hello", 5);
	assert_null(r.buf);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_partial_detects_truncation(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	uint8_t buf[32];
	size_t n = 0;
	(void)state;

	frame(buf, &n, false, "truncated", 9);
	rpc_msg_reader_init(&r, 100);
	assert_false(rpc_msg_reader_partial(&r));
	assert_int_equal(feed(&r, &s, buf, n - 1), 0);
	assert_int_equal(s.count, 0);
	assert_true(rpc_msg_reader_partial(&r));
	/* Disposing a reader holding a half message frees it. */
	rpc_msg_reader_dispose(&r);
	assert_null(r.buf);
	rpc_msg_reader_dispose(&r);
	seen_free(&s);
}

static void test_empty_feed(void **state)
{
	rpc_msg_reader r;
	struct seen s = { 0 };
	(void)state;
	rpc_msg_reader_init(&r, 10);
	assert_int_equal(rpc_msg_reader_feed(&r, NULL, 0, on_msg, &s), 0);
	assert_int_equal(s.count, 0);
	assert_false(rpc_msg_reader_partial(&r));
	rpc_msg_reader_dispose(&r);
	rpc_msg_reader_dispose(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prefix_layout),
		cmocka_unit_test(test_single_message_zero_copy),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_many_messages_one_chunk),
		cmocka_unit_test(test_zero_length_message),
		cmocka_unit_test(test_prefix_split_payload_whole),
		cmocka_unit_test(test_payload_split_across_chunks),
		cmocka_unit_test(test_exactly_max),
		cmocka_unit_test(test_over_max_rejected_before_alloc),
		cmocka_unit_test(test_huge_announced_length),
		cmocka_unit_test(test_error_after_messages_in_chunk),
		cmocka_unit_test(test_compressed_flag_passthrough),
		cmocka_unit_test(test_callback_stop_value),
		cmocka_unit_test(test_callback_stop_on_buffered_message),
		cmocka_unit_test(test_partial_detects_truncation),
		cmocka_unit_test(test_empty_feed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
