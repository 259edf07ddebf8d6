/*
 * wirecheck.c - string checks over the protobuf wire format. See
 * wirecheck.h.
 */
#include "rpc/wirecheck.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
	size_t i = 0;

	while (i < n) {
		uint8_t c = s[i];
		size_t need;
		uint32_t cp;

		if (c < 0x80) {
			if (c == 0)
				return HAS_NUL;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return BAD_UTF8;
		}
		if (n - i <= need)
			return BAD_UTF8;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return BAD_UTF8;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return BAD_UTF8;
		i += need + 1;
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
