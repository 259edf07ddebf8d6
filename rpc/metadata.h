/*
 * metadata.h - gRPC custom metadata (HTTP/2 headers that are not part of the
 * protocol itself).
 *
 * Keys are lower-case [0-9a-z_.-]. Keys ending in "-bin" carry arbitrary
 * bytes, base64-encoded on the wire; this API always holds the raw bytes and
 * the encoding happens at the edge of the wire.
 */
#ifndef ESTORE_RPC_METADATA_H
#define ESTORE_RPC_METADATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rpc_md_entry {
	char *key;        /* NUL-terminated, lower-case */
	uint8_t *value;   /* raw bytes, NUL-terminated for convenience */
	size_t value_len;
} rpc_md_entry;

typedef struct rpc_metadata {
	rpc_md_entry *items;
	size_t count;
	size_t cap;
	size_t bytes;     /* sum of key and value lengths, for limits */
} rpc_metadata;

void rpc_metadata_init(rpc_metadata *md);
void rpc_metadata_dispose(rpc_metadata *md);

/* True for a valid custom key: non-empty, [0-9a-z_.-] only, not starting
 * with "grpc-" and not one of the protocol's own headers (content-type, te,
 * host, user-agent and the HTTP/1 connection headers: see metadata.c).
 * Received metadata may carry user-agent; only sending refuses it. */
bool rpc_metadata_key_valid(const char *key, size_t len);

/* True when the key names binary metadata (ends in "-bin"). */
bool rpc_metadata_is_binary(const char *key, size_t len);

/* Appends a copy of key/value (raw bytes). ASCII values must be printable
 * (0x20..0x7E). Returns 0, RPC_ERR_INVALID (bad key or value) or
 * RPC_ERR_NOMEM. Keys may repeat. */
int rpc_metadata_add(rpc_metadata *md, const char *key, const void *value,
		     size_t len);

/* Appends an entry as it came off the wire: a "-bin" value is base64
 * (padded or not) and is decoded. Returns 0, RPC_ERR_INVALID or
 * RPC_ERR_NOMEM. */
int rpc_metadata_add_wire(rpc_metadata *md, const char *key, size_t key_len,
			  const char *value, size_t value_len);

/* First entry with this key, or NULL. */
const rpc_md_entry *rpc_metadata_get(const rpc_metadata *md, const char *key);

/* Wire form of an entry's value: base64 without padding for "-bin" keys
 * (malloc'd into *out), the value itself otherwise (*out points into the
 * entry; *must_free says which). Returns 0 or RPC_ERR_NOMEM. */
int rpc_metadata_wire_value(const rpc_md_entry *e, const char **out,
			    size_t *out_len, bool *must_free);

/* Standard base64 with padding; decode accepts missing padding and the
 * URL-safe alphabet. encode returns a malloc'd NUL-terminated string. */
char *rpc_base64_encode(const uint8_t *in, size_t len, bool pad,
			size_t *out_len);
int rpc_base64_decode(const char *in, size_t len, uint8_t **out,
		      size_t *out_len);

#endif
