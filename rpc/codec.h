/*
 * codec.h - gRPC length-prefixed message framing.
 *
 * Each message on a stream is: 1 byte compressed flag, 4 bytes big-endian
 * length, then the payload. DATA frames split and join messages arbitrarily,
 * so the reader is incremental: feed it any chunk, it calls back once per
 * complete message. The length is checked against the limit before any
 * payload is buffered.
 */
#ifndef ESTORE_RPC_CODEC_H
#define ESTORE_RPC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RPC_MSG_PREFIX_LEN 5
#define RPC_DEFAULT_MAX_MSG (4u * 1024u * 1024u)

/* Called for every complete message. `data` is valid only during the call
 * (it may point into the fed chunk: no copy when a message lies in one
 * chunk). Return 0 to continue, non-zero to stop feeding; the value is
 * returned by rpc_msg_reader_feed. */
typedef int (*rpc_msg_cb)(void *user, const uint8_t *data, size_t len,
			  bool compressed);

typedef struct rpc_msg_reader {
	uint8_t prefix[RPC_MSG_PREFIX_LEN];
	size_t prefix_have;
	uint8_t *buf;      /* payload being assembled; NULL when none */
	size_t need;       /* payload length from the prefix */
	size_t have;       /* payload bytes assembled so far */
	uint32_t max_len;  /* largest payload accepted */
	bool compressed;
	bool failed;       /* sticky: after an error every feed fails */
} rpc_msg_reader;

void rpc_msg_reader_init(rpc_msg_reader *r, uint32_t max_len);
void rpc_msg_reader_dispose(rpc_msg_reader *r);

/* Consumes all of data[0..len). Returns 0, the non-zero value a callback
 * returned, RPC_ERR_TOO_LARGE when a prefix announces more than max_len
 * (nothing is allocated for it), or RPC_ERR_NOMEM. After an error, or a
 * callback's stop, the reader stays failed (message boundaries are lost)
 * and every later feed returns RPC_ERR_CLOSED. Any non-zero flag byte is
 * reported as compressed; the caller decides whether it accepts that. */
int rpc_msg_reader_feed(rpc_msg_reader *r, const uint8_t *data, size_t len,
			rpc_msg_cb cb, void *user);

/* True while a message has been started but not completed: at end of
 * stream this means the peer sent a truncated message. */
bool rpc_msg_reader_partial(const rpc_msg_reader *r);

/* Writes the 5-byte prefix for a payload of `len` bytes. */
void rpc_msg_prefix(uint8_t out[RPC_MSG_PREFIX_LEN], bool compressed,
		    uint32_t len);

#endif
