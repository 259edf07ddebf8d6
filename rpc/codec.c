/*
 * codec.c - incremental reader and writer of gRPC length-prefixed messages.
 */
#include "rpc/codec.h"

#include "rpc/status.h"

#include <stdlib.h>
#include <string.h>

/* Handed to callbacks for zero-length messages so `data` is never NULL:
 * callers may memcpy/hash it without a special case (memcpy(NULL, 0) is UB). */
static const uint8_t empty_payload[1];

void rpc_msg_reader_init(rpc_msg_reader *r, uint32_t max_len)
{
	memset(r, 0, sizeof(*r));
	r->max_len = max_len;
}

void rpc_msg_reader_dispose(rpc_msg_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	r->buf = NULL;
	r->prefix_have = 0;
	r->need = 0;
	r->have = 0;
}

/* Resets to "between messages" before the callback runs, so that a callback
 * stopping the feed leaves no half state behind. */
static int deliver(rpc_msg_reader *r, const uint8_t *data, size_t len,
		   rpc_msg_cb cb, void *user)
{
	bool compressed = r->compressed;

	r->prefix_have = 0;
	r->need = 0;
	r->have = 0;
	r->compressed = false;
	return cb(user, len ? data : empty_payload, len, compressed);
}

int rpc_msg_reader_feed(rpc_msg_reader *r, const uint8_t *data, size_t len,
			rpc_msg_cb cb, void *user)
{
	size_t off = 0;
	int rc = 0;

	/* Once framing is lost there is no way to find the next message
	 * boundary, so every later feed fails too. */
	if (r->failed)
		return RPC_ERR_CLOSED;

	while (off < len) {
		if (r->prefix_have < RPC_MSG_PREFIX_LEN) {
			size_t take = RPC_MSG_PREFIX_LEN - r->prefix_have;
			if (take > len - off)
				take = len - off;
			memcpy(r->prefix + r->prefix_have, data + off, take);
			r->prefix_have += take;
			off += take;
			if (r->prefix_have < RPC_MSG_PREFIX_LEN)
				break;

			uint32_t n = (uint32_t)r->prefix[1] << 24 |
				     (uint32_t)r->prefix[2] << 16 |
				     (uint32_t)r->prefix[3] << 8 |
				     (uint32_t)r->prefix[4];
			/* Checked here, before anything is buffered: a peer
			 * must not make us allocate by announcing 4 GiB. */
			if (n > r->max_len) {
				rc = RPC_ERR_TOO_LARGE;
				goto fail;
			}
			/* Any non-zero flag counts as compressed. The spec
			 * allows only 0 and 1, but codec.h promises no
			 * framing error for it, and the callers already fail
			 * a compressed message they did not negotiate (as
			 * INTERNAL, what grpc-go answers to a bad flag). */
			r->compressed = r->prefix[0] != 0;
			r->need = n;
			r->have = 0;

			if (n == 0 || len - off >= n) {
				/* Whole payload is in this chunk: hand it out
				 * in place, which is the common case for
				 * small unary messages. */
				const uint8_t *p = data + off;
				off += n;
				rc = deliver(r, p, n, cb, user);
				if (rc)
					goto stop;
				continue;
			}
			r->buf = malloc(n);
			if (!r->buf) {
				rc = RPC_ERR_NOMEM;
				goto fail;
			}
		}

		size_t take = r->need - r->have;
		if (take > len - off)
			take = len - off;
		memcpy(r->buf + r->have, data + off, take);
		r->have += take;
		off += take;
		if (r->have < r->need)
			break;

		uint8_t *buf = r->buf;
		r->buf = NULL;
		rc = deliver(r, buf, r->need, cb, user);
		free(buf);
		if (rc)
			goto stop;
	}
	return 0;

stop:
	/* The rest of the chunk was not consumed and the caller cannot tell
	 * how much that was, so the stream's framing is lost: stay failed. */
	r->failed = true;
	return rc;
fail:
	r->failed = true;
	free(r->buf);
	r->buf = NULL;
	return rc;
}

bool rpc_msg_reader_partial(const rpc_msg_reader *r)
{
	return r->prefix_have > 0;
}

void rpc_msg_prefix(uint8_t out[RPC_MSG_PREFIX_LEN], bool compressed,
		    uint32_t len)
{
	out[0] = compressed ? 1 : 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}
