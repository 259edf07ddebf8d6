/*
 * echo_service.c - estore.testing.v1.Echo (behaviour in echo_service.h).
 */
#include "echo_service.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "estore/testing/v1/echo.pb-c.h"
#include "estore/testing/v1/echo.rpc.h"
#include "rpc/loop.h"

typedef Estore__Testing__V1__EchoRequest echo_request;
typedef Estore__Testing__V1__EchoReply echo_reply;
typedef Estore__Testing__V1__StreamRequest stream_request;

/* Largest payload UnaryEcho builds on an I/O thread: bigger copies and
 * fills go to a worker rather than stall every connection of that thread. */
#define INLINE_MAX_BYTES (256 * 1024)

/* The period of the reply_bytes pattern: prime, so a payload that was cut,
 * shifted or spliced at any power-of-two boundary no longer matches. */
#define PATTERN_PERIOD 251

/* ---- helpers --------------------------------------------------------- */

/* The status for a call that stopped early: callers of a handler that woke
 * from a sleep or failed a send want to know whether their deadline or a
 * cancellation did it (the server may already have sent its own status,
 * in which case ours is ignored). */
static rpc_code stopped(rpc_ctx *ctx)
{
	long long deadline = rpc_ctx_deadline(ctx);

	if (deadline != 0 && rpc_now_ns() >= deadline)
		return rpc_ctx_error(ctx, RPC_DEADLINE_EXCEEDED,
				     "deadline exceeded");
	return rpc_ctx_error(ctx, RPC_CANCELLED, "call cancelled");
}

static rpc_code send_failed(rpc_ctx *ctx, int err)
{
	switch (err) {
	case RPC_ERR_CANCELLED:
	case RPC_ERR_CLOSED:
		return stopped(ctx);
	case RPC_ERR_TOO_LARGE:
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "reply larger than the server's send limit");
	case RPC_ERR_NOMEM:
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
				     "out of memory queueing the reply");
	default:
		return rpc_ctx_error(ctx, RPC_INTERNAL, "send failed: %s",
				     rpc_strerror(err));
	}
}

static rpc_code recv_failed(rpc_ctx *ctx, int err, unsigned index)
{
	if (err == RPC_ERR_PROTO)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "request message %u did not parse", index);
	return stopped(ctx);
}

/* Copies every "echo-*" request entry to both the headers and the trailers.
 * Done first in every method, while headers can still be added, so even a
 * call that ends in an error (trailers-only) shows them. */
static rpc_code echo_metadata(rpc_ctx *ctx)
{
	const rpc_metadata *md = rpc_ctx_metadata(ctx);

	for (size_t i = 0; md != NULL && i < md->count; i++) {
		const rpc_md_entry *e = &md->items[i];
		int rc;

		if (strncmp(e->key, "echo-", 5) != 0)
			continue;
		rc = rpc_ctx_add_header(ctx, e->key, e->value, e->value_len);
		if (rc == 0)
			rc = rpc_ctx_add_trailer(ctx, e->key, e->value,
						 e->value_len);
		if (rc < 0)
			return rpc_ctx_error(ctx, RPC_INTERNAL,
					     "cannot echo metadata %s: %s",
					     e->key, rpc_strerror(rc));
	}
	return RPC_OK;
}

/* Fills buf with the documented pattern (byte i = i % 251), doubling the
 * filled prefix with memcpy so a 16 MiB payload costs a few copies rather
 * than a division per byte. */
static void fill_pattern(uint8_t *buf, size_t n)
{
	size_t have = n < PATTERN_PERIOD ? n : PATTERN_PERIOD;

	for (size_t i = 0; i < have; i++)
		buf[i] = (uint8_t)i;
	while (have < n) {
		/* Copy whole periods only, so the phase stays right. */
		size_t chunk = have - have % PATTERN_PERIOD;

		if (chunk > n - have)
			chunk = n - have;
		memcpy(buf + have, buf, chunk);
		have += chunk;
	}
}

static rpc_code check_status_code(rpc_ctx *ctx, int32_t code)
{
	if (code < 0 || code > RPC_CODE_MAX)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "status_code %d is not a gRPC status (0..%d)",
				     (int)code, RPC_CODE_MAX);
	return RPC_OK;
}

static rpc_code check_reply_bytes(rpc_ctx *ctx, int32_t n)
{
	if (n < 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "reply_bytes must not be negative (got %d)",
				     (int)n);
	if (n > ECHO_MAX_REPLY_BYTES)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "reply_bytes %d is over the limit of %d",
				     (int)n, ECHO_MAX_REPLY_BYTES);
	return RPC_OK;
}

static rpc_code check_echo_request(rpc_ctx *ctx, const echo_request *in)
{
	rpc_code code;

	if (in->sleep_ms < 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "sleep_ms must not be negative (got %lld)",
				     (long long)in->sleep_ms);
	code = check_reply_bytes(ctx, in->reply_bytes);
	if (code != RPC_OK)
		return code;
	return check_status_code(ctx, in->status_code);
}

static rpc_code echo_sleep(rpc_ctx *ctx, long long ms)
{
	if (ms <= 0)
		return RPC_OK;
	if (rpc_ctx_sleep(ctx, ms) != 0)
		return stopped(ctx);
	return RPC_OK;
}

static const char *str_or_empty(const char *s)
{
	return s != NULL ? s : "";
}

/* The common part of UnaryEcho and each BidiStream request: sleep, then
 * either the requested status or RPC_OK. */
static rpc_code honour_controls(rpc_ctx *ctx, const echo_request *in)
{
	rpc_code code = check_echo_request(ctx, in);

	if (code != RPC_OK)
		return code;
	code = echo_sleep(ctx, in->sleep_ms);
	if (code != RPC_OK)
		return code;
	if (in->status_code != 0)
		return rpc_ctx_error(ctx, (rpc_code)in->status_code, "%s",
				     str_or_empty(in->status_message));
	return RPC_OK;
}

/* ---- UnaryEcho ------------------------------------------------------- */

static rpc_code unary_echo(rpc_ctx *ctx, const echo_request *in,
			   echo_reply *out)
{
	rpc_arena *arena = rpc_ctx_arena(ctx);
	rpc_code code;

	/* Registered inline (echo_service_register): most calls are answered
	 * on the I/O thread. One that must sleep or move megabytes is handed
	 * to a worker, before anything (metadata included) is done, since the
	 * handler then runs again from the start. */
	if (rpc_ctx_on_io_thread(ctx) &&
	    (in->sleep_ms > 0 || in->reply_bytes > INLINE_MAX_BYTES ||
	     in->payload.len > INLINE_MAX_BYTES))
		return rpc_ctx_offload(ctx);

	code = echo_metadata(ctx);
	if (code != RPC_OK)
		return code;
	code = honour_controls(ctx, in);
	if (code != RPC_OK)
		return code;

	/* Copied into the arena rather than pointing into `in`: the reply must
	 * not depend on when the server releases the decoded request. */
	out->message = rpc_arena_strdup(arena, str_or_empty(in->message));
	if (out->message == NULL)
		goto nomem;
	if (in->reply_bytes > 0) {
		out->payload.len = (size_t)in->reply_bytes;
		out->payload.data = rpc_arena_alloc(arena, out->payload.len);
		if (out->payload.data == NULL)
			goto nomem;
		fill_pattern(out->payload.data, out->payload.len);
	} else if (in->payload.len > 0) {
		out->payload.len = in->payload.len;
		out->payload.data = rpc_arena_alloc(arena, in->payload.len);
		if (out->payload.data == NULL)
			goto nomem;
		memcpy(out->payload.data, in->payload.data, in->payload.len);
	}
	out->index = 0;
	return RPC_OK;

nomem:
	return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
			     "out of memory building the reply");
}

/* ---- ServerStream ---------------------------------------------------- */

static rpc_code check_stream_request(rpc_ctx *ctx, const stream_request *in)
{
	rpc_code code;

	if (in->count < 0 || in->count > ECHO_MAX_COUNT)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "count %d is outside 0..%d",
				     (int)in->count, ECHO_MAX_COUNT);
	if (in->interval_ms < 0)
		return rpc_ctx_error(ctx, RPC_INVALID_ARGUMENT,
				     "interval_ms must not be negative (got %lld)",
				     (long long)in->interval_ms);
	code = check_reply_bytes(ctx, in->reply_bytes);
	if (code != RPC_OK)
		return code;
	return check_status_code(ctx, in->status_code);
}

static rpc_code server_stream(rpc_ctx *ctx, const stream_request *in,
			      rpc_stream *out)
{
	echo_reply reply = ESTORE__TESTING__V1__ECHO_REPLY__INIT;
	rpc_code code;

	code = echo_metadata(ctx);
	if (code != RPC_OK)
		return code;
	code = check_stream_request(ctx, in);
	if (code != RPC_OK)
		return code;

	/* One payload for every reply: rpc_stream_send encodes before it
	 * returns, so the buffer can be shared, and the arena holds it once
	 * rather than `count` times. */
	reply.message = (char *)str_or_empty(in->message);
	if (in->reply_bytes > 0) {
		reply.payload.len = (size_t)in->reply_bytes;
		reply.payload.data = rpc_arena_alloc(rpc_ctx_arena(ctx),
						     reply.payload.len);
		if (reply.payload.data == NULL)
			return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
					     "out of memory building the reply");
		fill_pattern(reply.payload.data, reply.payload.len);
	}

	for (int32_t i = 0; i < in->count; i++) {
		int rc;

		if (i > 0) {
			code = echo_sleep(ctx, in->interval_ms);
			if (code != RPC_OK)
				return code;
		}
		/* A client that went away stops the stream here instead of
		 * after the send queue fills up. */
		if (rpc_ctx_cancelled(ctx))
			return stopped(ctx);
		reply.index = i;
		rc = estore_testing_v1_Echo_server_stream_send(out, &reply);
		if (rc < 0)
			return send_failed(ctx, rc);
	}
	if (in->status_code != 0)
		return rpc_ctx_error(ctx, (rpc_code)in->status_code, "%s",
				     str_or_empty(in->status_message));
	return RPC_OK;
}

/* ---- ClientStream ---------------------------------------------------- */

/* A growing malloc'd buffer: the joined reply is built here rather than in
 * the arena, where every doubling would leave the old copy behind until
 * the call ends. */
typedef struct join_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
} join_buf;

static int join_append(join_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		uint8_t *grown;

		while (cap < b->len + n)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (grown == NULL)
			return RPC_ERR_NOMEM;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static rpc_code client_stream(rpc_ctx *ctx, rpc_stream *in, echo_reply *out)
{
	rpc_arena *arena = rpc_ctx_arena(ctx);
	join_buf text = {0}, bytes = {0};
	unsigned count = 0;
	rpc_code code;

	code = echo_metadata(ctx);
	if (code != RPC_OK)
		return code;

	for (;;) {
		echo_request *req = NULL;
		const char *s;
		int rc = estore_testing_v1_Echo_client_stream_recv(in, &req);

		if (rc == 0)
			break;
		if (rc < 0) {
			code = recv_failed(ctx, rc, count);
			goto out;
		}
		s = str_or_empty(req->message);
		if (text.len + strlen(s) + bytes.len + req->payload.len >
		    ECHO_MAX_REPLY_BYTES) {
			protobuf_c_message_free_unpacked(&req->base, NULL);
			code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
					     "joined messages pass %d bytes",
					     ECHO_MAX_REPLY_BYTES);
			goto out;
		}
		rc = join_append(&text, s, strlen(s));
		if (rc == 0)
			rc = join_append(&bytes, req->payload.data,
					 req->payload.len);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		if (rc < 0) {
			code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
					     "out of memory joining messages");
			goto out;
		}
		count++;
	}

	out->message = rpc_arena_strndup(arena, text.data ? (char *)text.data
							  : "", text.len);
	if (out->message == NULL)
		goto nomem;
	if (bytes.len > 0) {
		out->payload.data = rpc_arena_alloc(arena, bytes.len);
		if (out->payload.data == NULL)
			goto nomem;
		memcpy(out->payload.data, bytes.data, bytes.len);
		out->payload.len = bytes.len;
	}
	out->index = (int32_t)count;
	code = RPC_OK;
	goto out;

nomem:
	code = rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
			     "out of memory building the reply");
out:
	free(text.data);
	free(bytes.data);
	return code;
}

/* ---- BidiStream ------------------------------------------------------ */

static rpc_code bidi_stream(rpc_ctx *ctx, rpc_stream *stream)
{
	rpc_code code;

	code = echo_metadata(ctx);
	if (code != RPC_OK)
		return code;

	for (unsigned index = 0;; index++) {
		echo_reply reply = ESTORE__TESTING__V1__ECHO_REPLY__INIT;
		echo_request *req = NULL;
		uint8_t *pattern = NULL;
		int rc = estore_testing_v1_Echo_bidi_stream_recv(stream, &req);

		if (rc == 0)
			return RPC_OK;
		if (rc < 0)
			return recv_failed(ctx, rc, index);
		code = honour_controls(ctx, req);
		if (code != RPC_OK) {
			protobuf_c_message_free_unpacked(&req->base, NULL);
			return code;
		}

		/* The reply points into the request, which is freed only after
		 * the send has encoded it; a generated payload is malloc'd and
		 * freed per message so a long stream does not pile up in the
		 * call's arena. */
		reply.message = (char *)str_or_empty(req->message);
		reply.payload = req->payload;
		reply.index = (int32_t)index;
		if (req->reply_bytes > 0) {
			pattern = malloc((size_t)req->reply_bytes);
			if (pattern == NULL) {
				protobuf_c_message_free_unpacked(&req->base, NULL);
				return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED,
						     "out of memory building the reply");
			}
			fill_pattern(pattern, (size_t)req->reply_bytes);
			reply.payload.data = pattern;
			reply.payload.len = (size_t)req->reply_bytes;
		}
		rc = estore_testing_v1_Echo_bidi_stream_send(stream, &reply);
		free(pattern);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		if (rc < 0)
			return send_failed(ctx, rc);
	}
}

/* ---- access rules ---------------------------------------------------- */

static const char *const role_names[] = { "customer", "vendor", "admin" };

/* One handler for every WhoAmI variant: the rule differs per method and is
 * enforced before this runs; the reply shows what the server established. */
static rpc_code who_am_i(rpc_ctx *ctx,
			 const Estore__Testing__V1__WhoAmIRequest *in,
			 Estore__Testing__V1__WhoAmIReply *out)
{
	const rpc_identity *id = rpc_ctx_identity(ctx);
	rpc_arena *a = rpc_ctx_arena(ctx);

	if (!id)
		return RPC_OK;
	out->subject = rpc_arena_strdup(a, id->subject);
	out->is_service = id->is_service;
	out->roles = rpc_arena_calloc(a, 3, sizeof(char *));
	if (!out->subject || !out->roles)
		return rpc_ctx_error(ctx, RPC_RESOURCE_EXHAUSTED, "out of memory");
	for (unsigned i = 0; i < 3; i++)
		if (id->roles & (1u << i))
			out->roles[out->n_roles++] = (char *)role_names[i];
	return RPC_OK;
}

/* ---- registration ---------------------------------------------------- */

static const estore_testing_v1_Echo_impl echo_impl = {
	.unary_echo = unary_echo,
	.server_stream = server_stream,
	.client_stream = client_stream,
	.bidi_stream = bidi_stream,
	.who_am_i = who_am_i,
	.public_who_am_i = who_am_i,
	.vendor_who_am_i = who_am_i,
	.admin_who_am_i = who_am_i,
	.internal_who_am_i = who_am_i,
};

int echo_service_register(rpc_server *srv)
{
	int rc = estore_testing_v1_Echo_register(srv, &echo_impl, NULL);

	/* UnaryEcho is what benchmarks hammer: skip the worker hand-off for
	 * it (unary_echo offloads the calls that would block). */
	if (rc == 0)
		rc = rpc_server_set_inline(srv,
					   "/estore.testing.v1.Echo/UnaryEcho");
	return rc;
}
