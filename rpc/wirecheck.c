/*
 * wirecheck.c - string checks over the protobuf wire format. See
 * wirecheck.h.
 */
#include "rpc/wirecheck.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "rpc/log.h"

enum {
	WIRE_VARINT = 0,
	WIRE_64BIT = 1,
	WIRE_LENGTH = 2,
	WIRE_32BIT = 5,
};

/* Reads a varint; false at the end of the buffer or beyond 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

enum { CLEAN, HAS_NUL, BAD_UTF8 };

/* Valid UTF-8 (shortest forms, no surrogates, at most U+10FFFF) and no
 * NUL byte? */
static int clean_utf8(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t k;

		if (s[i] == 0)
			return HAS_NUL;
		k = rpc_utf8_len(s + i, n - i);
		if (k == 0)
			return BAD_UTF8;
		i += k;
	}
	return CLEAN;
}

/* Appends ".name" (or "name" at the top), and "[index]" for an element of
 * a repeated field (index >= 0), to the path in buf; returns the new
 * length (the path is cut short, never overrun, when it is long). */
static size_t path_push(char *buf, size_t cap, size_t at, const char *name,
			long index)
{
	int n;

	if (at + 1 >= cap)
		return at;
	if (index >= 0)
		n = snprintf(buf + at, cap - at, "%s%s[%ld]", at > 0 ? "." : "",
			     name, index);
	else
		n = snprintf(buf + at, cap - at, "%s%s", at > 0 ? "." : "", name);
	if (n < 0)
		return at;
	return at + (size_t)n < cap ? at + (size_t)n : cap - 1;
}

static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
		 const uint8_t *end, int depth, char *path, size_t path_cap,
		 size_t path_len, char *err, size_t errlen)
{
	if (depth > RPC_WIRECHECK_MAX_DEPTH) {
		snprintf(err, errlen, "message nested deeper than %d levels",
			 RPC_WIRECHECK_MAX_DEPTH);
		return -1;
	}
	/* Elements of repeated fields seen so far, by field position, for
	 * "roles[2]" in messages (fields past the 64th go without index). */
	unsigned seen[64] = { 0 };

	while (p < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t key, n;
		long index = -1;

		if (!read_varint(&p, end, &key))
			return 0;   /* malformed: unpack refuses it */
		switch (key & 7) {
		case WIRE_VARINT:
			if (!read_varint(&p, end, &n))
				return 0;
			continue;
		case WIRE_64BIT:
			if (end - p < 8)
				return 0;
			p += 8;
			continue;
		case WIRE_32BIT:
			if (end - p < 4)
				return 0;
			p += 4;
			continue;
		case WIRE_LENGTH:
			break;
		default:
			return 0;   /* groups: not proto3, unpack's business */
		}
		if (!read_varint(&p, end, &n) || n > (uint64_t)(end - p))
			return 0;
		f = key >> 3 <= UINT32_MAX ?
			protobuf_c_message_descriptor_get_field(desc,
								(unsigned)(key >> 3)) :
			NULL;
		if (f != NULL && f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t pos = (size_t)(f - desc->fields);

			if (pos < sizeof(seen) / sizeof(*seen))
				index = seen[pos]++;
		}
		if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING) {
			int verdict = clean_utf8(p, (size_t)n);

			if (verdict != CLEAN) {
				path_push(path, path_cap, path_len, f->name, index);
				snprintf(err, errlen, "%s: %s", path,
					 verdict == HAS_NUL ? "contains a NUL byte" :
							      "not valid UTF-8");
				return -1;
			}
		}
		if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    f->descriptor != NULL) {
			size_t at = path_push(path, path_cap, path_len, f->name,
					      index);

			if (check(f->descriptor, p, p + n, depth + 1, path,
				  path_cap, at, err, errlen) < 0)
				return -1;
			path[path_len] = '\0';
		}
		p += n;
	}
	return 0;
}

int rpc_wirecheck_strings(const ProtobufCMessageDescriptor *desc,
			  const uint8_t *data, size_t len, char *err,
			  size_t errlen)
{
	char path[256] = "";

	if (data == NULL)
		return 0;
	return check(desc, data, data + len, 0, path, sizeof(path), 0, err,
		     errlen);
}
