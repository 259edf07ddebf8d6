/*
 * metadata.c - custom metadata list, key rules and base64 for "-bin" values.
 *
 * Which keys are refused, and why:
 *  - Anything outside [0-9a-z_.-]: HTTP/2 requires lower-case field names and
 *    gRPC's grammar allows only these characters. This also refuses every
 *    pseudo-header (":path", ":status"...), since ':' is not in the set.
 *  - "grpc-*": reserved by gRPC for the protocol (grpc-timeout, grpc-status,
 *    grpc-message, grpc-encoding...). The transport writes and reads those;
 *    letting them through as metadata would let a handler forge a status or
 *    a deadline.
 *  - content-type and te: written by the transport on every call with fixed
 *    values; a second copy would make the request invalid.
 *  - host, connection, keep-alive, proxy-connection, transfer-encoding,
 *    upgrade: HTTP/1 connection-specific fields that RFC 9113 §8.2.2 forbids
 *    in HTTP/2; nghttp2 would reject the whole header block.
 *  - user-agent, only when *sending* (rpc_metadata_add): the client transport
 *    sets its own and gRPC says not to duplicate it. On *receipt*
 *    (rpc_metadata_add_wire) it is accepted, because handlers and logs have a
 *    legitimate reason to read the caller's user agent.
 */
#include "rpc/metadata.h"

#include "rpc/status.h"

#include <stdlib.h>
#include <string.h>

static const char *const hop_by_hop[] = {
	"content-type", "te", "host", "connection", "keep-alive",
	"proxy-connection", "transfer-encoding", "upgrade",
};

static bool key_is(const char *key, size_t len, const char *name)
{
	return strlen(name) == len && memcmp(key, name, len) == 0;
}

/* Shared by both directions; only the user-agent rule differs. */
static bool key_ok(const char *key, size_t len, bool allow_user_agent)
{
	if (!key || len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	if (len >= 5 && memcmp(key, "grpc-", 5) == 0)
		return false;
	for (size_t i = 0; i < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); i++)
		if (key_is(key, len, hop_by_hop[i]))
			return false;
	if (!allow_user_agent && key_is(key, len, "user-agent"))
		return false;
	return true;
}

bool rpc_metadata_key_valid(const char *key, size_t len)
{
	return key_ok(key, len, false);
}

bool rpc_metadata_is_binary(const char *key, size_t len)
{
	return key && len >= 4 && memcmp(key + len - 4, "-bin", 4) == 0;
}

void rpc_metadata_init(rpc_metadata *md)
{
	memset(md, 0, sizeof(*md));
}

void rpc_metadata_dispose(rpc_metadata *md)
{
	if (!md)
		return;
	for (size_t i = 0; i < md->count; i++) {
		free(md->items[i].key);
		free(md->items[i].value);
	}
	free(md->items);
	rpc_metadata_init(md);
}

static bool printable(const uint8_t *v, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] > 0x7e)
			return false;
	return true;
}

/* Takes ownership of `value` (malloc'd, len + 1 bytes, NUL-terminated) on
 * success and on failure alike, so callers have a single path. */
static int append_owned(rpc_metadata *md, const char *key, size_t key_len,
			uint8_t *value, size_t len)
{
	if (md->count == md->cap) {
		size_t cap = md->cap ? md->cap * 2 : 8;
		rpc_md_entry *items;
		if (cap > SIZE_MAX / sizeof(*items))
			goto nomem;
		items = realloc(md->items, cap * sizeof(*items));
		if (!items)
			goto nomem;
		md->items = items;
		md->cap = cap;
	}
	char *k = malloc(key_len + 1);
	if (!k)
		goto nomem;
	memcpy(k, key, key_len);
	k[key_len] = '\0';

	md->items[md->count].key = k;
	md->items[md->count].value = value;
	md->items[md->count].value_len = len;
	md->count++;
	md->bytes += key_len + len;
	return 0;

nomem:
	free(value);
	return RPC_ERR_NOMEM;
}

static uint8_t *dup_bytes(const void *v, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	uint8_t *p = malloc(len + 1);
	if (!p)
		return NULL;
	if (len)
		memcpy(p, v, len);
	p[len] = '\0';
	return p;
}

int rpc_metadata_add(rpc_metadata *md, const char *key, const void *value,
		     size_t len)
{
	if (!md || !key || (!value && len))
		return RPC_ERR_INVALID;
	size_t key_len = strlen(key);
	if (!rpc_metadata_key_valid(key, key_len))
		return RPC_ERR_INVALID;
	if (!rpc_metadata_is_binary(key, key_len) && !printable(value, len))
		return RPC_ERR_INVALID;

	uint8_t *v = dup_bytes(value, len);
	if (!v)
		return RPC_ERR_NOMEM;
	return append_owned(md, key, key_len, v, len);
}

int rpc_metadata_add_wire(rpc_metadata *md, const char *key, size_t key_len,
			  const char *value, size_t value_len)
{
	uint8_t *v;
	size_t len;

	if (!md || !key || (!value && value_len))
		return RPC_ERR_INVALID;
	if (!key_ok(key, key_len, true))
		return RPC_ERR_INVALID;

	if (rpc_metadata_is_binary(key, key_len)) {
		int rc = rpc_base64_decode(value, value_len, &v, &len);
		if (rc)
			return rc;
	} else {
		/* gRPC's ASCII-Value grammar is %x20-%x7E; holding wire
		 * values to the same rule as ours keeps what handlers see
		 * safe to log and to echo back. */
		if (!printable((const uint8_t *)value, value_len))
			return RPC_ERR_INVALID;
		v = dup_bytes(value, value_len);
		if (!v)
			return RPC_ERR_NOMEM;
		len = value_len;
	}
	return append_owned(md, key, key_len, v, len);
}

const rpc_md_entry *rpc_metadata_get(const rpc_metadata *md, const char *key)
{
	if (!md || !key)
		return NULL;
	for (size_t i = 0; i < md->count; i++)
		if (strcmp(md->items[i].key, key) == 0)
			return &md->items[i];
	return NULL;
}

int rpc_metadata_wire_value(const rpc_md_entry *e, const char **out,
			    size_t *out_len, bool *must_free)
{
	if (rpc_metadata_is_binary(e->key, strlen(e->key))) {
		/* gRPC asks senders for unpadded base64 and receivers to take
		 * both; we send the short form. */
		char *b = rpc_base64_encode(e->value, e->value_len, false,
					    out_len);
		if (!b)
			return RPC_ERR_NOMEM;
		*out = b;
		*must_free = true;
		return 0;
	}
	*out = (const char *)e->value;
	*out_len = e->value_len;
	*must_free = false;
	return 0;
}

static const char b64_std[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *rpc_base64_encode(const uint8_t *in, size_t len, bool pad,
			size_t *out_len)
{
	if (len > (SIZE_MAX - 4) / 4 * 3)
		return NULL;
	size_t full = len / 3, rem = len % 3;
	size_t n = full * 4;
	if (rem)
		n += pad ? 4 : rem + 1;

	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	char *w = out;
	const uint8_t *p = in;
	for (size_t i = 0; i < full; i++, p += 3) {
		uint32_t v = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
		*w++ = b64_std[v >> 18];
		*w++ = b64_std[(v >> 12) & 63];
		*w++ = b64_std[(v >> 6) & 63];
		*w++ = b64_std[v & 63];
	}
	if (rem) {
		uint32_t v = (uint32_t)p[0] << 16;
		if (rem == 2)
			v |= (uint32_t)p[1] << 8;
		*w++ = b64_std[v >> 18];
		*w++ = b64_std[(v >> 12) & 63];
		if (rem == 2)
			*w++ = b64_std[(v >> 6) & 63];
		else if (pad)
			*w++ = '=';
		if (pad)
			*w++ = '=';
	}
	*w = '\0';
	if (out_len)
		*out_len = n;
	return out;
}

/* Both alphabets at once: '+' and '-' both mean 62, '/' and '_' both 63.
 * Peers differ (grpc-web and some proxies emit URL-safe), and there is no
 * ambiguity in accepting either. */
static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int rpc_base64_decode(const char *in, size_t len, uint8_t **out,
		      size_t *out_len)
{
	if (!out || !out_len || (!in && len))
		return RPC_ERR_INVALID;

	/* Padding, when present, must be the canonical one: it makes the
	 * length a multiple of 4 and is at most "==". */
	size_t data_len = len;
	if (len && in[len - 1] == '=') {
		if (len % 4)
			return RPC_ERR_INVALID;
		data_len--;
		if (in[data_len - 1] == '=')
			data_len--;
	}
	/* One leftover character carries only 6 bits: never a whole byte. */
	if (data_len % 4 == 1)
		return RPC_ERR_INVALID;

	size_t n = data_len / 4 * 3 + (data_len % 4 ? data_len % 4 - 1 : 0);
	uint8_t *buf = malloc(n + 1);
	if (!buf)
		return RPC_ERR_NOMEM;

	uint32_t acc = 0;
	int bits = 0;
	size_t w = 0;
	for (size_t i = 0; i < data_len; i++) {
		int v = b64_val((unsigned char)in[i]);
		if (v < 0) {
			/* Also catches '=' in the middle and whitespace. */
			free(buf);
			return RPC_ERR_INVALID;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[w++] = (uint8_t)(acc >> bits);
		}
	}
	/* Leftover low bits of the last character are ignored rather than
	 * required to be zero: RFC 4648 lets decoders accept them, and being
	 * strict would only break calls from sloppy but harmless encoders. */
	buf[w] = '\0';
	*out = buf;
	*out_len = w;
	return 0;
}
