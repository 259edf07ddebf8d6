/*
 * transcode.c - JSON <-> protobuf by the proto3 JSON mapping.
 *
 * Parsing lets jansson build a tree, then walks it against the message
 * descriptor and stores straight into a message laid out as protobuf-c's
 * unpack lays it out, so that protobuf_c_message_free_unpacked frees it.
 * Every allocation is attached to the message the moment it is made: an
 * error anywhere is cleaned up by freeing the root, and nothing else.
 *
 * Printing does not go through jansson: jansson prints every real with 17
 * significant digits (0.1 becomes 0.10000000000000001) and cannot emit a
 * number formatted by us, so a small writer produces the text directly.
 */
#include "edge-proxy/transcode.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define MEMBER(m, off) ((void *)((char *)(m) + (off)))
#define CMEMBER(m, off) ((const void *)((const char *)(m) + (off)))

/* Longest field path kept for error messages; longer ones are cut. */
#define PATH_CAP 384
_Static_assert(PATH_CAP + 2 < TC_ERROR_MAX, "a path leaves room for its error");
/* Room for user text quoted in an error message (cut to SHOW_TEXT bytes). */
#define SHOW_CAP 64
#define SHOW_TEXT 40

/* Timestamp range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z. */
#define TS_MIN_SECONDS INT64_C(-62135596800)
#define TS_MAX_SECONDS INT64_C(253402300799)
/* Duration range: 10000 Julian years either way. */
#define DUR_MAX_SECONDS INT64_C(315576000000)
#define NANOS_PER_SECOND 1000000000

typedef struct tc_ctx {
	ProtobufCAllocator *alloc;   /* never NULL */
	unsigned max_depth;
	tc_error *err;               /* may be NULL */
	char path[PATH_CAP];         /* where the walk is, for errors */
	size_t path_len;
} tc_ctx;

static void *sys_alloc(void *data, size_t size)
{
	(void)data;
	return malloc(size);
}

static void sys_free(void *data, void *p)
{
	(void)data;
	free(p);
}

/* What protobuf-c uses for a NULL allocator: the same malloc and free. */
static ProtobufCAllocator sys_allocator = {
	.alloc = sys_alloc,
	.free = sys_free,
	.allocator_data = NULL,
};

const char *tc_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
	case TC_ERR_SYNTAX:
		return "malformed JSON";
	case TC_ERR_INVALID:
		return "invalid value";
	case TC_ERR_LIMIT:
		return "nesting limit exceeded";
	case TC_ERR_UNSUPPORTED:
		return "unsupported type";
	case TC_ERR_NOMEM:
		return "out of memory";
	}
	return "unknown error";
}

static void ctx_init(tc_ctx *c, ProtobufCAllocator *allocator,
		     const tc_limits *limits, tc_error *err)
{
	c->alloc = allocator ? allocator : &sys_allocator;
	c->max_depth = limits && limits->max_depth ? limits->max_depth
						   : TC_DEFAULT_MAX_DEPTH;
	c->err = err;
	c->path[0] = '\0';
	c->path_len = 0;
	if (err) {
		err->code = 0;
		err->message[0] = '\0';
	}
}

/* Fills the caller's error, prefixed with the current path, and returns
 * code so that callers can `return fail(...)`. */
static int fail(tc_ctx *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(tc_ctx *c, int code, const char *fmt, ...)
{
	va_list ap;
	size_t n = 0;

	if (!c->err)
		return code;
	c->err->code = code;
	if (c->path_len) {
		memcpy(c->err->message, c->path, c->path_len);
		memcpy(c->err->message + c->path_len, ": ", 2);
		n = c->path_len + 2;
	}
	va_start(ap, fmt);
	vsnprintf(c->err->message + n, TC_ERROR_MAX - n, fmt, ap);
	va_end(ap);
	return code;
}

static int nomem(tc_ctx *c)
{
	return fail(c, TC_ERR_NOMEM, "out of memory");
}

static int too_deep(tc_ctx *c)
{
	return fail(c, TC_ERR_LIMIT, "messages nested deeper than %u levels",
		    c->max_depth);
}

/* ---- field paths, for error messages ---- */

/* What does not fit is dropped: a long path is cut, never refused. */
static void path_put(tc_ctx *c, const char *s, size_t n)
{
	size_t room = PATH_CAP - 1 - c->path_len;

	if (n > room)
		n = room;
	memcpy(c->path + c->path_len, s, n);
	c->path_len += n;
	c->path[c->path_len] = '\0';
}

static void path_pop(tc_ctx *c, size_t mark)
{
	c->path_len = mark;
	c->path[mark] = '\0';
}

/* Each push returns the mark to pop back to. */
static size_t path_field(tc_ctx *c, const char *name, size_t n)
{
	size_t mark = c->path_len;

	if (mark)
		path_put(c, ".", 1);
	path_put(c, name, n);
	return mark;
}

static size_t path_index(tc_ctx *c, size_t i)
{
	size_t mark = c->path_len;
	char b[32];
	int n = snprintf(b, sizeof b, "[%zu]", i);

	path_put(c, b, (size_t)n);
	return mark;
}

static const char *show(const char *s, size_t n, char out[SHOW_CAP]);

static size_t path_key(tc_ctx *c, const char *key, size_t n)
{
	size_t mark = c->path_len;
	char b[SHOW_CAP];

	path_put(c, "[", 1);
	show(key, n, b);
	path_put(c, b, strlen(b));
	path_put(c, "]", 1);
	return mark;
}

/* Field names in paths and output: protoc's json_name, which drops each
 * '_' and upper-cases the ASCII letter after it ("page_size" ->
 * "pageSize", "a_1" -> "a1"). */
static size_t camel(const char *name, char *out, size_t cap)
{
	size_t n = 0;
	bool up = false;

	for (; *name && n + 1 < cap; name++) {
		char ch = *name;

		if (ch == '_') {
			up = true;
			continue;
		}
		if (up && ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		up = false;
		out[n++] = ch;
	}
	out[n] = '\0';
	return n;
}

static size_t path_field_camel(tc_ctx *c, const char *name)
{
	char b[PATH_CAP];
	size_t n = camel(name, b, sizeof b);

	return path_field(c, b, n);
}

/*
 * User text quoted in an error message: at most SHOW_TEXT bytes, cut on a
 * character boundary, with quotes, backslashes and control characters
 * replaced by '?' so that the message stays one plain line.
 */
static const char *show(const char *s, size_t n, char out[SHOW_CAP])
{
	size_t k = n, o = 0;
	bool cut = false;

	if (k > SHOW_TEXT) {
		k = SHOW_TEXT;
		while (k > 0 && ((unsigned char)s[k] & 0xc0) == 0x80)
			k--;
		cut = true;
	}
	out[o++] = '"';
	for (size_t i = 0; i < k; i++) {
		unsigned char ch = (unsigned char)s[i];

		out[o++] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\'
				   ? '?' : (char)ch;
	}
	if (cut) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_NULL:
		break;
	}
	return "null";
}

static const char *type_name(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32: return "int32";
	case PROTOBUF_C_TYPE_SINT32: return "sint32";
	case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
	case PROTOBUF_C_TYPE_INT64: return "int64";
	case PROTOBUF_C_TYPE_SINT64: return "sint64";
	case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
	case PROTOBUF_C_TYPE_UINT32: return "uint32";
	case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
	case PROTOBUF_C_TYPE_UINT64: return "uint64";
	case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
	case PROTOBUF_C_TYPE_FLOAT: return "float";
	case PROTOBUF_C_TYPE_DOUBLE: return "double";
	case PROTOBUF_C_TYPE_BOOL: return "bool";
	case PROTOBUF_C_TYPE_ENUM: return "enum";
	case PROTOBUF_C_TYPE_STRING: return "string";
	case PROTOBUF_C_TYPE_BYTES: return "bytes";
	case PROTOBUF_C_TYPE_MESSAGE: return "message";
	}
	return "?";
}

/* ---- descriptors ---- */

static void *pb_alloc(tc_ctx *c, size_t n)
{
	return c->alloc->alloc(c->alloc->allocator_data, n);
}

static void pb_free(tc_ctx *c, void *p)
{
	if (p)
		c->alloc->free(c->alloc->allocator_data, p);
}

/* A message with its defaults, as unpack starts one. Generated
 * descriptors always have message_init. */
static ProtobufCMessage *new_message(tc_ctx *c,
				     const ProtobufCMessageDescriptor *d)
{
	ProtobufCMessage *m = pb_alloc(c, d->sizeof_message);

	if (m)
		protobuf_c_message_init(d, m);
	return m;
}

/* Bytes of one value of type t in a message or a repeated array. Enums
 * are int-sized (protoc-c forces it) and read as int32_t by protobuf-c. */
static size_t value_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int32_t);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(int64_t);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		break;
	}
	return sizeof(ProtobufCMessage *);
}

/* Optional scalars and bytes keep a has_ flag at quantifier_offset;
 * optional strings and messages use NULL instead, and oneof members the
 * case field. */
static bool has_flag(const ProtobufCFieldDescriptor *f)
{
	return f->label == PROTOBUF_C_LABEL_OPTIONAL &&
	       !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
	       f->type != PROTOBUF_C_TYPE_STRING &&
	       f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static bool camel_eq(const char *name, const char *key, size_t n)
{
	size_t k = 0;
	bool up = false;

	for (; *name; name++) {
		char ch = *name;

		if (ch == '_') {
			up = true;
			continue;
		}
		if (up && ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		up = false;
		if (k >= n || key[k] != ch)
			return false;
		k++;
	}
	return k == n;
}

/* The field a JSON key or path segment names: its lowerCamelCase name or
 * its proto name. Linear: messages have few fields, and this avoids
 * building a name table per descriptor. */
static const ProtobufCFieldDescriptor *
find_field(const ProtobufCMessageDescriptor *d, const char *key, size_t n)
{
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];

		if ((strncmp(f->name, key, n) == 0 && f->name[n] == '\0') ||
		    camel_eq(f->name, key, n))
			return f;
	}
	return NULL;
}

/* Whether s is the entry message name protoc derives from a map field's
 * name: "m_string_int32" -> "MStringInt32Entry". */
static bool entry_name_eq(const char *field, const char *s)
{
	bool up = true;

	for (; *field; field++) {
		char ch = *field;

		if (ch == '_') {
			up = true;
			continue;
		}
		if (up && ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		up = false;
		if (*s++ != ch)
			return false;
	}
	return strcmp(s, "Entry") == 0;
}

/*
 * protobuf-c drops the map_entry option, so a map is recognised by what
 * protoc generates for one: a repeated field of a message nested in the
 * parent, named after the field plus "Entry", with exactly key = 1 and
 * value = 2. A hand-written message of that exact shape and name would be
 * taken for a map; protoc itself refuses most such clashes.
 */
static bool is_map(const ProtobufCMessageDescriptor *parent,
		   const ProtobufCFieldDescriptor *f)
{
	const ProtobufCMessageDescriptor *e;
	size_t plen;

	if (f->label != PROTOBUF_C_LABEL_REPEATED ||
	    f->type != PROTOBUF_C_TYPE_MESSAGE)
		return false;
	e = f->descriptor;
	if (e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2 ||
	    strcmp(e->fields[0].name, "key") != 0 ||
	    strcmp(e->fields[1].name, "value") != 0 ||
	    e->fields[0].label == PROTOBUF_C_LABEL_REPEATED ||
	    e->fields[1].label == PROTOBUF_C_LABEL_REPEATED)
		return false;
	plen = strlen(parent->name);
	if (strncmp(e->name, parent->name, plen) != 0 || e->name[plen] != '.')
		return false;
	return entry_name_eq(f->name, e->name + plen + 1);
}

/* Well-known types with a JSON form of their own. */
enum wkt {
	WKT_NONE,
	WKT_TIMESTAMP,
	WKT_DURATION,
	WKT_FIELD_MASK,
	WKT_WRAPPER,
	WKT_UNSUPPORTED,
};

/*
 * Known by full name, so that this module needs none of their generated
 * code; the shape is checked too, since the code below reads their fields
 * by position.
 */
static enum wkt wkt_of(const ProtobufCMessageDescriptor *d)
{
	static const char prefix[] = "google.protobuf.";
	static const char *const wrappers[] = {
		"DoubleValue", "FloatValue", "Int64Value", "UInt64Value",
		"Int32Value", "UInt32Value", "BoolValue", "StringValue",
		"BytesValue",
	};
	static const char *const unsupported[] = {
		"Any", "Struct", "Value", "ListValue",
	};
	const ProtobufCFieldDescriptor *f = d->fields;
	const char *n;

	if (strncmp(d->name, prefix, sizeof prefix - 1) != 0)
		return WKT_NONE;
	n = d->name + sizeof prefix - 1;
	if (strcmp(n, "Timestamp") == 0 || strcmp(n, "Duration") == 0) {
		if (d->n_fields != 2 || f[0].id != 1 || f[1].id != 2 ||
		    f[0].type != PROTOBUF_C_TYPE_INT64 ||
		    f[1].type != PROTOBUF_C_TYPE_INT32 ||
		    f[0].label == PROTOBUF_C_LABEL_REPEATED ||
		    f[1].label == PROTOBUF_C_LABEL_REPEATED)
			return WKT_NONE;
		return n[0] == 'T' ? WKT_TIMESTAMP : WKT_DURATION;
	}
	if (strcmp(n, "FieldMask") == 0) {
		if (d->n_fields != 1 || f[0].type != PROTOBUF_C_TYPE_STRING ||
		    f[0].label != PROTOBUF_C_LABEL_REPEATED)
			return WKT_NONE;
		return WKT_FIELD_MASK;
	}
	for (size_t i = 0; i < sizeof wrappers / sizeof *wrappers; i++)
		if (strcmp(n, wrappers[i]) == 0) {
			if (d->n_fields != 1 || f[0].id != 1 ||
			    f[0].label == PROTOBUF_C_LABEL_REPEATED)
				return WKT_NONE;
			return WKT_WRAPPER;
		}
	for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++)
		if (strcmp(n, unsupported[i]) == 0)
			return WKT_UNSUPPORTED;
	return WKT_NONE;
}

static int unsupported(tc_ctx *c, const ProtobufCMessageDescriptor *d)
{
	return fail(c, TC_ERR_UNSUPPORTED, "%s is not supported", d->name);
}

/* ---- text: UTF-8, numbers, base64 ---- */

static bool utf8_valid(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		unsigned char b = s[i];
		size_t len;
		uint32_t cp;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			len = 2;
			cp = b & 0x1f;
		} else if (b >= 0xe0 && b <= 0xef) {
			len = 3;
			cp = b & 0x0f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			len = 4;
			cp = b & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		/* Overlong forms, UTF-16 surrogates and beyond U+10FFFF. */
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += len;
	}
	return true;
}

static bool is_digit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* Whether s[0..n) is a JSON number; *integral when it has neither a
 * fraction nor an exponent. */
static bool number_syntax(const char *s, size_t n, bool *integral)
{
	size_t i = 0;

	*integral = true;
	if (i < n && s[i] == '-')
		i++;
	if (i < n && s[i] == '0') {
		i++;
	} else if (i < n && is_digit(s[i])) {
		while (i < n && is_digit(s[i]))
			i++;
	} else {
		return false;
	}
	if (i < n && s[i] == '.') {
		*integral = false;
		if (++i >= n || !is_digit(s[i]))
			return false;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		*integral = false;
		if (++i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= n || !is_digit(s[i]))
			return false;
		while (i < n && is_digit(s[i]))
			i++;
	}
	return i == n;
}

/* A number on its way to a field, before the field's range is checked. */
typedef struct numval {
	enum { NUM_INT, NUM_UINT, NUM_REAL } kind;
	int64_t i;          /* NUM_INT */
	uint64_t u;         /* NUM_UINT: only values above INT64_MAX */
	double d;           /* NUM_REAL */
	bool overflow;      /* NUM_REAL: text beyond double's range */
	bool big_integer;   /* NUM_REAL: integer text beyond 64 bits */
	const char *text;   /* the string it was read from, NULL for a JSON number */
	size_t text_len;
} numval;

static void num_from_json(const json_t *v, numval *nv)
{
	memset(nv, 0, sizeof *nv);
	if (json_is_integer(v)) {
		nv->kind = NUM_INT;
		nv->i = json_integer_value(v);
	} else {
		nv->kind = NUM_REAL;
		nv->d = json_real_value(v);
	}
}

/*
 * Reads a number written as text: a JSON number, "NaN", "Infinity" or
 * "-Infinity" (whether the field takes those is decided later). Integers
 * are read exactly (strtoll/strtoull), so no 64-bit value is rounded
 * through a double. s[n] must be '\0': the text came from jansson or from
 * a terminated copy, and strtod needs the terminator.
 */
static bool num_from_text(const char *s, size_t n, numval *nv)
{
	bool integral;
	char *end;

	memset(nv, 0, sizeof *nv);
	nv->text = s;
	nv->text_len = n;
	nv->kind = NUM_REAL;
	if (n == 3 && memcmp(s, "NaN", 3) == 0) {
		nv->d = NAN;
		return true;
	}
	if ((n == 8 && memcmp(s, "Infinity", 8) == 0) ||
	    (n == 9 && memcmp(s, "-Infinity", 9) == 0)) {
		nv->d = s[0] == '-' ? -INFINITY : INFINITY;
		return true;
	}
	if (!number_syntax(s, n, &integral))
		return false;
	errno = 0;
	if (integral && s[0] == '-') {
		long long v = strtoll(s, &end, 10);

		if (errno != ERANGE) {
			nv->kind = NUM_INT;
			nv->i = v;
			return true;
		}
	} else if (integral) {
		unsigned long long v = strtoull(s, &end, 10);

		if (errno != ERANGE) {
			if (v <= INT64_MAX) {
				nv->kind = NUM_INT;
				nv->i = (int64_t)v;
			} else {
				nv->kind = NUM_UINT;
				nv->u = v;
			}
			return true;
		}
	}
	/* A fraction, an exponent, or an integer beyond 64 bits (out of range
	 * for every integer field, but a fine float). */
	nv->big_integer = integral;
	errno = 0;
	nv->d = strtod(s, &end);
	if (errno == ERANGE && (nv->d == HUGE_VAL || nv->d == -HUGE_VAL))
		nv->overflow = true;
	return true;
}

/*
 * The first of "%.15g", "%.16g", "%.17g" that reads back to the same
 * finite double, as protobuf prints: 0.1 stays "0.1" (jansson would print
 * 0.10000000000000001), since %g drops the trailing zeros of a value that
 * 15 digits hold; 17 always read back.
 */
static void shortest_double(double d, char *out, size_t cap)
{
	for (int p = 15; p <= 17; p++) {
		snprintf(out, cap, "%.*g", p, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static const char *show_num(const numval *nv, char out[SHOW_CAP])
{
	if (nv->text)
		return show(nv->text, nv->text_len, out);
	if (nv->kind == NUM_INT)
		snprintf(out, SHOW_CAP, "%" PRId64, nv->i);
	else
		shortest_double(nv->d, out, SHOW_CAP);
	return out;
}

static int out_of_range(tc_ctx *c, const numval *nv, ProtobufCType t)
{
	char b[SHOW_CAP];

	return fail(c, TC_ERR_INVALID, "%s is out of range for %s",
		    show_num(nv, b), type_name(t));
}

/*
 * Checks a real that is to become an integer. A real is integral or not,
 * but beyond 2^53 it may not be the number the client wrote (jansson read
 * "12345678901234567.0" as ...568): such values must come as integer text.
 */
static int check_real_integer(tc_ctx *c, const numval *nv, bool is64)
{
	char b[SHOW_CAP];

	if (nv->d != nv->d || isinf(nv->d) || nv->d != trunc(nv->d))
		return fail(c, TC_ERR_INVALID, "%s is not an integer",
			    show_num(nv, b));
	if (is64 && (nv->d > 0x1p53 || nv->d < -0x1p53))
		return fail(c, TC_ERR_INVALID,
			    "%s is not exact beyond 2^53: write 64-bit integers "
			    "in full, preferably as strings", show_num(nv, b));
	return 0;
}

static int to_signed(tc_ctx *c, const numval *nv, ProtobufCType t,
		     int64_t *out)
{
	bool is64 = value_size(t) == 8;
	int64_t hi = is64 ? INT64_MAX : INT32_MAX, lo = -hi - 1;
	double lim = is64 ? 0x1p63 : 0x1p31;
	int rc;

	switch (nv->kind) {
	case NUM_INT:
		if (nv->i < lo || nv->i > hi)
			return out_of_range(c, nv, t);
		*out = nv->i;
		return 0;
	case NUM_UINT:
		return out_of_range(c, nv, t);
	case NUM_REAL:
		break;
	}
	if (nv->overflow || nv->big_integer ||
	    (!isnan(nv->d) && !isinf(nv->d) && !(nv->d >= -lim && nv->d < lim)))
		return out_of_range(c, nv, t);
	if ((rc = check_real_integer(c, nv, is64)))
		return rc;
	*out = (int64_t)nv->d;
	return 0;
}

static int to_unsigned(tc_ctx *c, const numval *nv, ProtobufCType t,
		       uint64_t *out)
{
	bool is64 = value_size(t) == 8;
	uint64_t hi = is64 ? UINT64_MAX : UINT32_MAX;
	double lim = is64 ? 0x1p64 : 0x1p32;
	int rc;

	switch (nv->kind) {
	case NUM_INT:
		if (nv->i < 0 || (uint64_t)nv->i > hi)
			return out_of_range(c, nv, t);
		*out = (uint64_t)nv->i;
		return 0;
	case NUM_UINT:
		if (nv->u > hi)
			return out_of_range(c, nv, t);
		*out = nv->u;
		return 0;
	case NUM_REAL:
		break;
	}
	/* -0.0 passes as 0: it is an integer, and in range. */
	if (nv->overflow || nv->big_integer ||
	    (!isnan(nv->d) && !isinf(nv->d) && !(nv->d >= 0 && nv->d < lim)))
		return out_of_range(c, nv, t);
	if ((rc = check_real_integer(c, nv, is64)))
		return rc;
	*out = (uint64_t)nv->d;
	return 0;
}

/* Stores a number of any numeric field type into slot. */
static int store_number(tc_ctx *c, ProtobufCType t, const numval *nv,
			void *slot)
{
	int64_t i;
	uint64_t u;
	double d;
	int rc;

	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		if ((rc = to_signed(c, nv, t, &i)))
			return rc;
		*(int32_t *)slot = (int32_t)i;
		return 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if ((rc = to_signed(c, nv, t, &i)))
			return rc;
		*(int64_t *)slot = i;
		return 0;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if ((rc = to_unsigned(c, nv, t, &u)))
			return rc;
		*(uint32_t *)slot = (uint32_t)u;
		return 0;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if ((rc = to_unsigned(c, nv, t, &u)))
			return rc;
		*(uint64_t *)slot = u;
		return 0;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		break;
	default:
		return fail(c, TC_ERR_INVALID, "not a numeric field");
	}
	d = nv->kind == NUM_INT ? (double)nv->i
	  : nv->kind == NUM_UINT ? (double)nv->u : nv->d;
	if (nv->overflow)
		return out_of_range(c, nv, t);
	if (t == PROTOBUF_C_TYPE_DOUBLE) {
		*(double *)slot = d;
		return 0;
	}
	/* Finite doubles below FLT_MAX + half an ulp round to a finite float;
	 * from there on they would round to infinity. */
	if (isfinite(d) && !(d < 0x1.ffffffp127 && d > -0x1.ffffffp127))
		return out_of_range(c, nv, t);
	*(float *)slot = (float)d;
	return 0;
}

static int sextet(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+' || ch == '-')
		return 62;
	if (ch == '/' || ch == '_')
		return 63;
	return -1;
}

/*
 * Decodes base64 in either alphabet (RFC 4648 §4 and §5, even mixed, as
 * protobuf's parsers accept), padded or not; padding, when present, must
 * complete the last group. Bits left over in the last character are
 * ignored, as the common decoders do. out has room for n * 3 / 4 bytes.
 */
static bool b64_decode(const char *s, size_t n, uint8_t *out, size_t *outlen)
{
	size_t pad = 0, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	while (n > 0 && s[n - 1] == '=' && pad < 2) {
		n--;
		pad++;
	}
	if ((pad && (n + pad) % 4 != 0) || n % 4 == 1)
		return false;
	for (size_t i = 0; i < n; i++) {
		int v = sextet((unsigned char)s[i]);

		if (v < 0)
			return false;
		acc = (acc << 6 | (uint32_t)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	*outlen = o;
	return true;
}

static void b64_encode_group(const uint8_t *in, size_t n, char out[4])
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t v = (uint32_t)in[0] << 16;

	if (n > 1)
		v |= (uint32_t)in[1] << 8;
	if (n > 2)
		v |= in[2];
	out[0] = alphabet[v >> 18];
	out[1] = alphabet[(v >> 12) & 63];
	out[2] = n > 1 ? alphabet[(v >> 6) & 63] : '=';
	out[3] = n > 2 ? alphabet[v & 63] : '=';
}

/* ---- calendar, for Timestamp ---- */

static bool is_leap(int64_t y)
{
	return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int days_in_month(int64_t y, int m)
{
	static const unsigned char days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31,
	};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 to January 1st of year y (1 <= y <= 10000):
 * the days since 0001-01-01 of the proleptic Gregorian calendar, less the
 * 719162 between 0001-01-01 and 1970-01-01. */
static int64_t days_before_year(int64_t y)
{
	int64_t p = y - 1;

	return 365 * p + p / 4 - p / 100 + p / 400 - 719162;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
	static const short before[12] = {
		0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334,
	};

	return days_before_year(y) + before[m - 1] + (m > 2 && is_leap(y)) +
	       d - 1;
}

static void civil_from_days(int64_t days, int *y, int *m, int *d)
{
	/* 146097 days per 400 years: the estimate is off by a year at most. */
	int64_t yy = 1970 + days * 400 / 146097;
	int64_t left;
	int mm = 1;

	while (days_before_year(yy) > days)
		yy--;
	while (days_before_year(yy + 1) <= days)
		yy++;
	left = days - days_before_year(yy);
	while (left >= days_in_month(yy, mm))
		left -= days_in_month(yy, mm++);
	*y = (int)yy;
	*m = mm;
	*d = (int)left + 1;
}

/* Reads exactly k digits. */
static bool digits(const char *s, int k, int *out)
{
	int v = 0;

	for (int i = 0; i < k; i++) {
		if (!is_digit(s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* Reads ".d" to ".ddddddddd" at s[*i], as nanoseconds (none: 0). */
static bool fraction(const char *s, size_t n, size_t *i, int32_t *nanos)
{
	int32_t v = 0;
	int k = 0;

	*nanos = 0;
	if (*i >= n || s[*i] != '.')
		return true;
	for ((*i)++; *i < n && is_digit(s[*i]); (*i)++) {
		if (++k > 9)
			return false;
		v = v * 10 + (s[*i] - '0');
	}
	if (k == 0)
		return false;
	for (; k < 9; k++)
		v *= 10;
	*nanos = v;
	return true;
}

enum { TEXT_OK, TEXT_SYNTAX, TEXT_RANGE };

/*
 * RFC 3339 date-time: "YYYY-MM-DDTHH:MM:SS", up to 9 fractional digits,
 * then "Z" or an offset "+HH:MM" / "-HH:MM" (RFC 3339 allows lower-case
 * "t" and "z" too). A leap second (":60") is refused: Timestamp has none.
 */
static int parse_timestamp(const char *s, size_t n, int64_t *secs,
			   int32_t *nanos)
{
	int y, mo, d, h, mi, sec, oh, om;
	int64_t off = 0, t;
	size_t i = 19;

	if (n < 20 || !digits(s, 4, &y) || s[4] != '-' ||
	    !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return TEXT_SYNTAX;
	if (!fraction(s, n, &i, nanos))
		return TEXT_SYNTAX;
	if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
		i++;
	} else if (i < n && (s[i] == '+' || s[i] == '-') && n - i >= 6 &&
		   digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
		   digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59) {
		off = (int64_t)(oh * 60 + om) * 60;
		if (s[i] == '-')
			off = -off;
		i += 6;
	} else {
		return TEXT_SYNTAX;
	}
	if (i != n || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 ||
	    sec > 59)
		return TEXT_SYNTAX;
	if (y == 0)
		return TEXT_RANGE;
	if (d > days_in_month(y, mo))
		return TEXT_SYNTAX;
	t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
	if (t < TS_MIN_SECONDS || t > TS_MAX_SECONDS)
		return TEXT_RANGE;
	*secs = t;
	return TEXT_OK;
}

/* "-?digits(.1-9 digits)?s", within 10000 years. */
static int parse_duration(const char *s, size_t n, int64_t *secs,
			  int32_t *nanos)
{
	size_t i = 0, start;
	bool neg = false, big = false;
	int64_t v = 0;

	if (i < n && s[i] == '-') {
		neg = true;
		i++;
	}
	for (start = i; i < n && is_digit(s[i]); i++) {
		if (v > DUR_MAX_SECONDS)
			big = true;   /* keep scanning: syntax first */
		else
			v = v * 10 + (s[i] - '0');
	}
	if (i == start || !fraction(s, n, &i, nanos) || i + 1 != n ||
	    s[i] != 's')
		return TEXT_SYNTAX;
	if (big || v > DUR_MAX_SECONDS)
		return TEXT_RANGE;
	*secs = neg ? -v : v;
	if (neg)
		*nanos = -*nanos;
	return TEXT_OK;
}

/* ---- parsing: JSON and text into slots ---- */

/* Copies a string into the message's memory. Jansson has checked UTF-8
 * for JSON text, but parameters and map keys come here unchecked. */
static int store_string(tc_ctx *c, const char *s, size_t n, void *slot)
{
	char *p;

	if (memchr(s, '\0', n))
		return fail(c, TC_ERR_INVALID,
			    "strings cannot contain U+0000");
	if (!utf8_valid(s, n))
		return fail(c, TC_ERR_INVALID, "not valid UTF-8");
	if (!(p = pb_alloc(c, n + 1)))
		return nomem(c);
	memcpy(p, s, n);
	p[n] = '\0';
	*(char **)slot = p;
	return 0;
}

static int store_base64(tc_ctx *c, const char *s, size_t n, void *slot)
{
	ProtobufCBinaryData *bd = slot;
	uint8_t *p;
	size_t len;
	char b[SHOW_CAP];

	if (n == 0) {
		bd->len = 0;
		bd->data = NULL;
		return 0;
	}
	if (!(p = pb_alloc(c, n / 4 * 3 + 3)))
		return nomem(c);
	if (!b64_decode(s, n, p, &len)) {
		pb_free(c, p);
		return fail(c, TC_ERR_INVALID, "invalid base64 %s",
			    show(s, n, b));
	}
	bd->len = len;
	bd->data = p;
	return 0;
}

static int store_enum_number(tc_ctx *c, const numval *nv, void *slot)
{
	/* Unknown numbers are kept: proto3 enums are open. */
	return store_number(c, PROTOBUF_C_TYPE_ENUM, nv, slot);
}

/* s[n] == '\0' (see num_from_text). */
static int store_enum_name(tc_ctx *c, const ProtobufCEnumDescriptor *ed,
			   const char *s, size_t n, bool numbers, void *slot)
{
	const ProtobufCEnumValue *ev = NULL;
	numval nv;
	bool integral;
	char b[SHOW_CAP];

	if (strlen(s) == n)
		ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
	if (ev) {
		*(int32_t *)slot = ev->value;
		return 0;
	}
	if (numbers && number_syntax(s, n, &integral) &&
	    num_from_text(s, n, &nv))
		return store_enum_number(c, &nv, slot);
	return fail(c, TC_ERR_INVALID, "unknown enum value %s", show(s, n, b));
}

/* Sets a Timestamp's or Duration's seconds and nanos (fields 1 and 2,
 * checked by wkt_of). */
static void set_seconds_nanos(ProtobufCMessage *m, int64_t s, int32_t ns)
{
	const ProtobufCFieldDescriptor *f = m->descriptor->fields;

	*(int64_t *)MEMBER(m, f[0].offset) = s;
	*(int32_t *)MEMBER(m, f[1].offset) = ns;
}

/* "fooBar.baz,qux" -> ["foo_bar.baz", "qux"]. */
static int parse_field_mask(tc_ctx *c, const char *s, size_t n,
			    ProtobufCMessage *m)
{
	const ProtobufCFieldDescriptor *f = m->descriptor->fields;
	size_t count = 1, k = 0, start = 0;
	char **paths;
	char b[SHOW_CAP];

	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		count += s[i] == ',';
	if (!(paths = pb_alloc(c, count * sizeof *paths)))
		return nomem(c);
	memset(paths, 0, count * sizeof *paths);
	*(char ***)MEMBER(m, f->offset) = paths;
	*(size_t *)MEMBER(m, f->quantifier_offset) = count;
	for (size_t i = 0; i <= n; i++) {
		size_t len, upper = 0, o = 0;
		char *p;

		if (i < n && s[i] != ',')
			continue;
		len = i - start;
		for (size_t j = start; j < i; j++) {
			if (s[j] == '_' || s[j] == '\0')
				return fail(c, TC_ERR_INVALID,
					    "field mask path %s is not "
					    "lowerCamelCase",
					    show(s + start, len, b));
			upper += s[j] >= 'A' && s[j] <= 'Z';
		}
		if (len == 0)
			return fail(c, TC_ERR_INVALID,
				    "empty path in field mask %s",
				    show(s, n, b));
		if (!(p = pb_alloc(c, len + upper + 1)))
			return nomem(c);
		for (size_t j = start; j < i; j++) {
			if (s[j] >= 'A' && s[j] <= 'Z') {
				p[o++] = '_';
				p[o++] = (char)(s[j] - 'A' + 'a');
			} else {
				p[o++] = s[j];
			}
		}
		p[o] = '\0';
		paths[k++] = p;
		start = i + 1;
	}
	return 0;
}

/* The string form of Timestamp, Duration and FieldMask into m. */
static int parse_wkt_text(tc_ctx *c, enum wkt k, const char *s, size_t n,
			  ProtobufCMessage *m)
{
	int64_t secs = 0;
	int32_t nanos = 0;
	int r;
	char b[SHOW_CAP];

	switch (k) {
	case WKT_TIMESTAMP:
		r = parse_timestamp(s, n, &secs, &nanos);
		if (r == TEXT_SYNTAX)
			return fail(c, TC_ERR_INVALID,
				    "invalid RFC 3339 timestamp %s",
				    show(s, n, b));
		if (r == TEXT_RANGE)
			return fail(c, TC_ERR_INVALID,
				    "timestamp %s is outside 0001-01-01 to "
				    "9999-12-31", show(s, n, b));
		break;
	case WKT_DURATION:
		r = parse_duration(s, n, &secs, &nanos);
		if (r == TEXT_SYNTAX)
			return fail(c, TC_ERR_INVALID,
				    "invalid duration %s (expected seconds "
				    "with an \"s\", e.g. \"1.5s\")",
				    show(s, n, b));
		if (r == TEXT_RANGE)
			return fail(c, TC_ERR_INVALID,
				    "duration %s is beyond 10000 years",
				    show(s, n, b));
		break;
	case WKT_FIELD_MASK:
		return parse_field_mask(c, s, n, m);
	default:
		return fail(c, TC_ERR_INVALID, "no text form");
	}
	set_seconds_nanos(m, secs, nanos);
	return 0;
}

/*
 * Parses text (a parameter value or a map key: not JSON) into one value
 * of field f at slot. For messages (a well-known type with a text form)
 * the new message is stored in slot before it is filled: on failure the
 * caller frees whatever slot holds. s[n] must be '\0'.
 */
static int parse_text(tc_ctx *c, const ProtobufCFieldDescriptor *f,
		      const char *s, size_t n, void *slot)
{
	const ProtobufCMessageDescriptor *d;
	ProtobufCMessage *m;
	numval nv;
	char b[SHOW_CAP];

	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		return store_string(c, s, n, slot);
	case PROTOBUF_C_TYPE_BYTES:
		return store_base64(c, s, n, slot);
	case PROTOBUF_C_TYPE_BOOL:
		if (n == 4 && memcmp(s, "true", 4) == 0)
			*(protobuf_c_boolean *)slot = 1;
		else if (n == 5 && memcmp(s, "false", 5) == 0)
			*(protobuf_c_boolean *)slot = 0;
		else
			return fail(c, TC_ERR_INVALID,
				    "expected true or false, got %s",
				    show(s, n, b));
		return 0;
	case PROTOBUF_C_TYPE_ENUM:
		return store_enum_name(c, f->descriptor, s, n, true, slot);
	case PROTOBUF_C_TYPE_MESSAGE:
		d = f->descriptor;
		if (!(m = new_message(c, d)))
			return nomem(c);
		*(ProtobufCMessage **)slot = m;
		if (wkt_of(d) == WKT_WRAPPER)
			return parse_text(c, &d->fields[0], s, n,
					  MEMBER(m, d->fields[0].offset));
		return parse_wkt_text(c, wkt_of(d), s, n, m);
	default:
		if (!num_from_text(s, n, &nv))
			return fail(c, TC_ERR_INVALID, "%s is not a number",
				    show(s, n, b));
		return store_number(c, f->type, &nv, slot);
	}
}

static int parse_object(tc_ctx *c, json_t *obj, ProtobufCMessage *m,
			unsigned depth);

/* A JSON value for a message-typed field: an object, or the special form
 * of a well-known type. */
static int parse_message_value(tc_ctx *c, const ProtobufCMessageDescriptor *d,
			       json_t *v, ProtobufCMessage **slot,
			       unsigned depth);

/*
 * Parses one JSON value of field f (one element, for a repeated field)
 * into slot. depth is the level a message value has.
 */
static int parse_value(tc_ctx *c, const ProtobufCFieldDescriptor *f,
		       json_t *v, void *slot, unsigned depth)
{
	numval nv;
	char b[SHOW_CAP];

	switch (f->type) {
	case PROTOBUF_C_TYPE_MESSAGE:
		return parse_message_value(c, f->descriptor, v, slot, depth);
	case PROTOBUF_C_TYPE_STRING:
		if (!json_is_string(v))
			return fail(c, TC_ERR_INVALID,
				    "expected a string, got %s", json_kind(v));
		return store_string(c, json_string_value(v),
				    json_string_length(v), slot);
	case PROTOBUF_C_TYPE_BYTES:
		if (!json_is_string(v))
			return fail(c, TC_ERR_INVALID,
				    "expected a base64 string, got %s",
				    json_kind(v));
		return store_base64(c, json_string_value(v),
				    json_string_length(v), slot);
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v))
			return fail(c, TC_ERR_INVALID,
				    "expected true or false, got %s",
				    json_kind(v));
		*(protobuf_c_boolean *)slot = json_is_true(v);
		return 0;
	case PROTOBUF_C_TYPE_ENUM:
		if (json_is_string(v))
			return store_enum_name(c, f->descriptor,
					       json_string_value(v),
					       json_string_length(v), false,
					       slot);
		if (!json_is_number(v))
			return fail(c, TC_ERR_INVALID,
				    "expected an enum name or number, got %s",
				    json_kind(v));
		num_from_json(v, &nv);
		return store_enum_number(c, &nv, slot);
	default:
		break;
	}
	if (json_is_string(v)) {
		if (!num_from_text(json_string_value(v), json_string_length(v),
				   &nv))
			return fail(c, TC_ERR_INVALID, "%s is not a number",
				    show(json_string_value(v),
					 json_string_length(v), b));
	} else if (json_is_number(v)) {
		num_from_json(v, &nv);
	} else {
		return fail(c, TC_ERR_INVALID, "expected a number, got %s",
			    json_kind(v));
	}
	return store_number(c, f->type, &nv, slot);
}

static int parse_message_value(tc_ctx *c, const ProtobufCMessageDescriptor *d,
			       json_t *v, ProtobufCMessage **slot,
			       unsigned depth)
{
	enum wkt k = wkt_of(d);
	ProtobufCMessage *m;

	switch (k) {
	case WKT_UNSUPPORTED:
		return unsupported(c, d);
	case WKT_NONE:
		if (!json_is_object(v))
			return fail(c, TC_ERR_INVALID,
				    "expected an object, got %s", json_kind(v));
		break;
	case WKT_TIMESTAMP:
	case WKT_DURATION:
	case WKT_FIELD_MASK:
		if (!json_is_string(v))
			return fail(c, TC_ERR_INVALID,
				    "expected a %s string, got %s",
				    k == WKT_TIMESTAMP ? "timestamp"
				    : k == WKT_DURATION ? "duration"
				    : "field mask", json_kind(v));
		break;
	case WKT_WRAPPER:
		break;
	}
	if (!(m = new_message(c, d)))
		return nomem(c);
	*slot = m;
	switch (k) {
	case WKT_NONE:
		return parse_object(c, v, m, depth);
	case WKT_WRAPPER:
		/* The bare value; null was handled by the field (not set). */
		return parse_value(c, &d->fields[0], v,
				   MEMBER(m, d->fields[0].offset), depth);
	default:
		return parse_wkt_text(c, k, json_string_value(v),
				      json_string_length(v), m);
	}
}

/*
 * Arrays are allocated at their full size, zeroed, and attached with
 * their full count before any element is parsed: zeroed strings, bytes
 * and messages are what free_unpacked skips, so an error half-way leaves
 * a message that frees cleanly with the root.
 */
static void *attach_array(tc_ctx *c, ProtobufCMessage *m,
			  const ProtobufCFieldDescriptor *f, size_t n)
{
	size_t esz = value_size(f->type);
	void *arr;

	if (n > SIZE_MAX / esz || !(arr = pb_alloc(c, n * esz)))
		return NULL;
	memset(arr, 0, n * esz);
	*(void **)MEMBER(m, f->offset) = arr;
	*(size_t *)MEMBER(m, f->quantifier_offset) = n;
	return arr;
}

static int parse_list(tc_ctx *c, ProtobufCMessage *m,
		      const ProtobufCFieldDescriptor *f, json_t *v,
		      unsigned depth)
{
	size_t n, esz = value_size(f->type);
	char *arr;

	if (!json_is_array(v))
		return fail(c, TC_ERR_INVALID, "expected an array, got %s",
			    json_kind(v));
	if ((n = json_array_size(v)) == 0)
		return 0;
	if (!(arr = attach_array(c, m, f, n)))
		return nomem(c);
	for (size_t i = 0; i < n; i++) {
		json_t *el = json_array_get(v, i);
		size_t mark = path_index(c, i);
		int rc;

		if (json_is_null(el))
			return fail(c, TC_ERR_INVALID,
				    "null is not allowed in an array");
		if ((rc = parse_value(c, f, el, arr + i * esz, depth)))
			return rc;
		path_pop(c, mark);
	}
	return 0;
}

static int parse_map(tc_ctx *c, ProtobufCMessage *m,
		     const ProtobufCFieldDescriptor *f, json_t *v,
		     unsigned depth)
{
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	const ProtobufCFieldDescriptor *kf = &ed->fields[0];
	const ProtobufCFieldDescriptor *vf = &ed->fields[1];
	ProtobufCMessage **entries;
	const char *key;
	size_t klen, i = 0;
	json_t *val;

	if (!json_is_object(v))
		return fail(c, TC_ERR_INVALID, "expected an object, got %s",
			    json_kind(v));
	if (json_object_size(v) == 0)
		return 0;
	if (!(entries = attach_array(c, m, f, json_object_size(v))))
		return nomem(c);
	json_object_keylen_foreach(v, key, klen, val) {
		size_t mark = path_key(c, key, klen);
		ProtobufCMessage *e;
		int rc;

		if (json_is_null(val))
			return fail(c, TC_ERR_INVALID,
				    "null is not allowed as a map value");
		if (!(e = new_message(c, ed)))
			return nomem(c);
		entries[i++] = e;
		/* Keys are always strings in JSON: "12" for an int64 key,
		 * "true" for a bool one. */
		if ((rc = parse_text(c, kf, key, klen, MEMBER(e, kf->offset))))
			return rc;
		if ((rc = parse_value(c, vf, val, MEMBER(e, vf->offset),
				      depth)))
			return rc;
		if (has_flag(kf))
			*(protobuf_c_boolean *)MEMBER(e, kf->quantifier_offset) = 1;
		if (has_flag(vf))
			*(protobuf_c_boolean *)MEMBER(e, vf->quantifier_offset) = 1;
		path_pop(c, mark);
	}
	return 0;
}

static int parse_field(tc_ctx *c, ProtobufCMessage *m,
		       const ProtobufCFieldDescriptor *f, json_t *v,
		       unsigned depth)
{
	int rc;

	/* null is the default value: nothing to set, not even a oneof case. */
	if (json_is_null(v))
		return 0;
	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return is_map(m->descriptor, f) ? parse_map(c, m, f, v, depth)
						: parse_list(c, m, f, v, depth);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *which = MEMBER(m, f->quantifier_offset);

		if (*which != 0 && *which != f->id) {
			const ProtobufCFieldDescriptor *other =
				protobuf_c_message_descriptor_get_field(
					m->descriptor, *which);
			char name[PATH_CAP];

			camel(other ? other->name : "?", name, sizeof name);
			return fail(c, TC_ERR_INVALID,
				    "only one field of a oneof may be set, "
				    "and %s is set too", name);
		}
		/* Before the value, so that a submessage allocated for it is
		 * freed with the root if the value fails. */
		*which = f->id;
	}
	if ((rc = parse_value(c, f, v, MEMBER(m, f->offset), depth)))
		return rc;
	if (has_flag(f))
		*(protobuf_c_boolean *)MEMBER(m, f->quantifier_offset) = 1;
	return 0;
}

/* m is at message level `depth` (the top is 1); a message in one of its
 * fields, its arrays or its maps is one deeper. */
static int parse_object(tc_ctx *c, json_t *obj, ProtobufCMessage *m,
			unsigned depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	uint64_t seen_small[4] = {0}, *seen = seen_small;
	const char *key;
	size_t klen;
	json_t *val;
	int rc = 0;

	if (depth > c->max_depth)
		return too_deep(c);
	if (d->n_fields > 64 * (sizeof seen_small / sizeof *seen_small) &&
	    !(seen = calloc((d->n_fields + 63) / 64, sizeof *seen)))
		return nomem(c);
	json_object_keylen_foreach(obj, key, klen, val) {
		const ProtobufCFieldDescriptor *f = find_field(d, key, klen);
		size_t i, mark;

		if (!f)
			continue;   /* unknown fields are ignored */
		i = (size_t)(f - d->fields);
		mark = path_field(c, key, klen);
		/* jansson rejects a repeated key, not one field under both of
		 * its names. */
		if (seen[i / 64] >> (i % 64) & 1) {
			rc = fail(c, TC_ERR_INVALID,
				  "field given twice (by its JSON name and its "
				  "proto name)");
			goto out;
		}
		seen[i / 64] |= UINT64_C(1) << (i % 64);
		if ((rc = parse_field(c, m, f, val, depth + 1)))
			goto out;
		path_pop(c, mark);
	}
out:
	if (seen != seen_small)
		free(seen);
	return rc;
}

/*
 * The depth limit, on the raw text: a request nested 2000 deep is refused
 * here, before jansson builds 2000 levels of tree. Each message level can
 * take two JSON levels (an array or a map, then the object), so the text
 * may nest twice max_depth; unknown fields get no more. Only brackets
 * outside strings count; a malformed text is left to jansson to report.
 */
static int check_depth(tc_ctx *c, const char *s, size_t n)
{
	unsigned long long depth = 0, limit = 2ull * c->max_depth;
	size_t line = 1, column = 0;
	bool in_string = false;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		/* Columns count characters, as jansson's do. */
		if (ch == '\n') {
			line++;
			column = 0;
		} else if ((ch & 0xc0) != 0x80) {
			column++;
		}
		if (in_string) {
			if (ch == '\\' && i + 1 < n && s[i + 1] != '\n') {
				i++;
				column++;
			} else if (ch == '"') {
				in_string = false;
			}
			continue;
		}
		if (ch == '"') {
			in_string = true;
		} else if (ch == '{' || ch == '[') {
			if (++depth > limit)
				return fail(c, TC_ERR_LIMIT,
					    "line %zu, column %zu: JSON nested "
					    "deeper than %llu levels", line,
					    column, limit);
		} else if ((ch == '}' || ch == ']') && depth > 0) {
			depth--;
		}
	}
	return 0;
}

static int syntax_error(tc_ctx *c, const json_error_t *e)
{
	switch (json_error_code(e)) {
	case json_error_out_of_memory:
		return nomem(c);
	case json_error_stack_overflow:
		return fail(c, TC_ERR_LIMIT, "line %d, column %d: %s", e->line,
			    e->column, e->text);
	case json_error_invalid_utf8:
		return fail(c, TC_ERR_SYNTAX,
			    "line %d, column %d: invalid UTF-8 (%s)", e->line,
			    e->column, e->text);
	case json_error_numeric_overflow:
		/* jansson holds integers in a long long: a larger one (such as
		 * a uint64 above 2^63-1) cannot be a JSON number here. */
		if (strstr(e->text, "integer"))
			return fail(c, TC_ERR_SYNTAX,
				    "line %d, column %d: integer outside the "
				    "signed 64-bit range; send 64-bit values "
				    "(uint64 above 9223372036854775807 too) as "
				    "strings", e->line, e->column);
		break;
	default:
		break;
	}
	return fail(c, TC_ERR_SYNTAX, "line %d, column %d: %s", e->line,
		    e->column, e->text);
}

int tc_from_json(const ProtobufCMessageDescriptor *desc, const char *json,
		 size_t len, ProtobufCAllocator *allocator,
		 const tc_limits *limits, ProtobufCMessage **out,
		 tc_error *err)
{
	tc_ctx c;
	json_error_t jerr;
	json_t *root = NULL;
	ProtobufCMessage *m = NULL;
	int rc;

	ctx_init(&c, allocator, limits, err);
	*out = NULL;
	if ((rc = check_depth(&c, json, len)))
		goto out;
	/* JSON_DECODE_ANY so that a bare value gets our error below, not
	 * jansson's "'[' or '{' expected"; JSON_ALLOW_NUL so that "\u0000"
	 * gets one naming the field. */
	root = json_loadb(json, len,
			  JSON_REJECT_DUPLICATES | JSON_DECODE_ANY |
			  JSON_ALLOW_NUL, &jerr);
	if (!root) {
		rc = syntax_error(&c, &jerr);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = fail(&c, TC_ERR_INVALID,
			  "expected a JSON object at the top level, got %s",
			  json_kind(root));
		goto out;
	}
	if (wkt_of(desc) == WKT_UNSUPPORTED) {
		rc = unsupported(&c, desc);
		goto out;
	}
	if (!(m = new_message(&c, desc))) {
		rc = nomem(&c);
		goto out;
	}
	if ((rc = parse_object(&c, root, m, 1)))
		goto out;
	*out = m;
	m = NULL;
out:
	if (m)
		protobuf_c_message_free_unpacked(m, c.alloc);
	json_decref(root);
	return rc;
}

/* ---- printing ---- */

/* The output text. Allocation failure is sticky: later writes do
 * nothing, and the walk stops at the next field. */
typedef struct wbuf {
	char *p;
	size_t len, cap;
	bool nomem;
} wbuf;

static void w_put(wbuf *w, const char *s, size_t n)
{
	if (w->nomem)
		return;
	/* Always room for the final NUL. */
	if (w->cap - w->len <= n) {
		size_t cap = w->cap ? w->cap : 256;
		char *p;

		while (cap - w->len <= n) {
			if (cap > SIZE_MAX / 2) {
				w->nomem = true;
				return;
			}
			cap *= 2;
		}
		if (!(p = realloc(w->p, cap))) {
			w->nomem = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void w_puts(wbuf *w, const char *s)
{
	w_put(w, s, strlen(s));
}

static void w_putc(wbuf *w, char ch)
{
	w_put(w, &ch, 1);
}

/* A field name in lowerCamelCase (see camel()); names are identifiers:
 * nothing to escape. */
static void w_camel(wbuf *w, const char *name)
{
	bool up = false;

	for (; *name; name++) {
		char ch = *name;

		if (ch == '_') {
			up = true;
			continue;
		}
		if (up && ch >= 'a' && ch <= 'z')
			ch = (char)(ch - 'a' + 'A');
		up = false;
		w_putc(w, ch);
	}
}

static int write_string(tc_ctx *c, wbuf *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;

	/* protobuf-c does not check UTF-8 when it unpacks: a peer's bytes
	 * may end up here. */
	if (!utf8_valid(s, n))
		return fail(c, TC_ERR_INVALID, "string is not valid UTF-8");
	w_putc(w, '"');
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[6] = { '\\', 0, 0, 0, 0, 0 };
		size_t elen = 2;

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		w_put(w, s + start, i - start);
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			elen = 6;
		}
		w_put(w, esc, elen);
		start = i + 1;
	}
	w_put(w, s + start, n - start);
	w_putc(w, '"');
	return 0;
}

static void write_double(wbuf *w, double d)
{
	char b[40];

	if (isnan(d)) {
		w_puts(w, "\"NaN\"");
		return;
	}
	if (isinf(d)) {
		w_puts(w, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
		return;
	}
	shortest_double(d, b, sizeof b);
	w_puts(w, b);
}

/* As shortest_double, for a float: from 6 digits (FLT_DIG) to 9. */
static void write_float(wbuf *w, float f)
{
	char b[40];

	if (isnan(f) || isinf(f)) {
		write_double(w, f);
		return;
	}
	for (int p = 6; p <= 9; p++) {
		snprintf(b, sizeof b, "%.*g", p, (double)f);
		if (strtof(b, NULL) == f)
			break;
	}
	w_puts(w, b);
}

static void write_base64(wbuf *w, const uint8_t *data, size_t len)
{
	char b[256];
	size_t o = 0;

	w_putc(w, '"');
	for (size_t i = 0; i < len; i += 3) {
		b64_encode_group(data + i, len - i < 3 ? len - i : 3, b + o);
		o += 4;
		if (o == sizeof b) {
			w_put(w, b, o);
			o = 0;
		}
	}
	w_put(w, b, o);
	w_putc(w, '"');
}

/* ".ddd", ".dddddd" or ".ddddddddd": the shortest that holds ns (none
 * for 0), as protobuf prints. ns in 0..999999999. */
static int frac_text(char *out, size_t cap, int32_t ns)
{
	if (ns == 0)
		return snprintf(out, cap, "%s", "");
	if (ns % 1000000 == 0)
		return snprintf(out, cap, ".%03d", (int)(ns / 1000000));
	if (ns % 1000 == 0)
		return snprintf(out, cap, ".%06d", (int)(ns / 1000));
	return snprintf(out, cap, ".%09d", (int)ns);
}

static void get_seconds_nanos(const ProtobufCMessage *m, int64_t *s,
			      int32_t *ns)
{
	const ProtobufCFieldDescriptor *f = m->descriptor->fields;

	*s = *(const int64_t *)CMEMBER(m, f[0].offset);
	*ns = *(const int32_t *)CMEMBER(m, f[1].offset);
}

static int write_timestamp(tc_ctx *c, wbuf *w, const ProtobufCMessage *m)
{
	int64_t s, days;
	int32_t ns;
	int y, mo, d, sod;
	char b[80], frac[16];

	get_seconds_nanos(m, &s, &ns);
	if (s < TS_MIN_SECONDS || s > TS_MAX_SECONDS || ns < 0 ||
	    ns >= NANOS_PER_SECOND)
		return fail(c, TC_ERR_INVALID,
			    "Timestamp of %" PRId64 " s and %" PRId32 " ns is "
			    "outside 0001-01-01 to 9999-12-31", s, ns);
	/* Floor division: seconds before 1970 belong to the previous day. */
	days = s / 86400;
	if (s % 86400 < 0)
		days--;
	sod = (int)(s - days * 86400);
	civil_from_days(days, &y, &mo, &d);
	frac_text(frac, sizeof frac, ns);
	snprintf(b, sizeof b, "\"%04d-%02d-%02dT%02d:%02d:%02d%sZ\"", y, mo, d,
		 sod / 3600, sod / 60 % 60, sod % 60, frac);
	w_puts(w, b);
	return 0;
}

static int write_duration(tc_ctx *c, wbuf *w, const ProtobufCMessage *m)
{
	int64_t s;
	int32_t ns;
	char b[64], frac[16];
	bool neg;

	get_seconds_nanos(m, &s, &ns);
	if (s < -DUR_MAX_SECONDS || s > DUR_MAX_SECONDS ||
	    ns <= -NANOS_PER_SECOND || ns >= NANOS_PER_SECOND ||
	    (s > 0 && ns < 0) || (s < 0 && ns > 0))
		return fail(c, TC_ERR_INVALID,
			    "Duration of %" PRId64 " s and %" PRId32 " ns is "
			    "out of range or has mixed signs", s, ns);
	neg = s < 0 || ns < 0;
	frac_text(frac, sizeof frac, ns < 0 ? -ns : ns);
	snprintf(b, sizeof b, "\"%s%" PRId64 "%ss\"", neg ? "-" : "",
		 s < 0 ? -s : s, frac);
	w_puts(w, b);
	return 0;
}

/* ["foo_bar.baz", "qux"] -> "fooBar.baz,qux". A path that would not come
 * back the same ("a_1", "fooBar", "a__b") has no JSON form. */
static int write_field_mask(tc_ctx *c, wbuf *w, const ProtobufCMessage *m)
{
	const ProtobufCFieldDescriptor *f = m->descriptor->fields;
	size_t n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
	char *const *paths = *(char *const *const *)CMEMBER(m, f->offset);
	wbuf t = {0};
	int rc = 0;
	char b[SHOW_CAP];

	for (size_t i = 0; i < n; i++) {
		const char *p = paths[i] ? paths[i] : "";

		if (i)
			w_putc(&t, ',');
		for (size_t j = 0; p[j]; j++) {
			char ch = p[j];

			if (ch >= 'A' && ch <= 'Z')
				goto bad;
			if (ch == '_') {
				ch = p[j + 1];
				if (ch < 'a' || ch > 'z')
					goto bad;
				ch = (char)(ch - 'a' + 'A');
				j++;
			}
			w_putc(&t, ch);
		}
		continue;
bad:
		rc = fail(c, TC_ERR_INVALID,
			  "field mask path %s has no lowerCamelCase form",
			  show(p, strlen(p), b));
		goto out;
	}
	if (t.nomem) {
		w->nomem = true;
		goto out;
	}
	rc = write_string(c, w, t.p ? t.p : "", t.len);
out:
	free(t.p);
	return rc;
}

static int write_object(tc_ctx *c, wbuf *w, const ProtobufCMessage *m,
			unsigned depth);

static int write_value(tc_ctx *c, wbuf *w, const ProtobufCFieldDescriptor *f,
		       const void *slot, unsigned depth);

/* A message-typed value: an object, or a well-known type's own form. A
 * NULL message (a map value left unset) prints as its type's default. */
static int write_message_value(tc_ctx *c, wbuf *w,
			       const ProtobufCMessageDescriptor *d,
			       const ProtobufCMessage *m, unsigned depth)
{
	enum wkt k = wkt_of(d);
	ProtobufCMessage *tmp = NULL;
	int rc;

	if (k == WKT_UNSUPPORTED)
		return unsupported(c, d);
	if (!m) {
		if (!(tmp = malloc(d->sizeof_message))) {
			w->nomem = true;
			return TC_ERR_NOMEM;
		}
		protobuf_c_message_init(d, tmp);
		m = tmp;
	}
	switch (k) {
	case WKT_TIMESTAMP:
		rc = write_timestamp(c, w, m);
		break;
	case WKT_DURATION:
		rc = write_duration(c, w, m);
		break;
	case WKT_FIELD_MASK:
		rc = write_field_mask(c, w, m);
		break;
	case WKT_WRAPPER:
		rc = write_value(c, w, &d->fields[0],
				 CMEMBER(m, d->fields[0].offset), depth);
		break;
	default:
		rc = write_object(c, w, m, depth);
		break;
	}
	/* A default instance owns no memory: free() is enough. */
	free(tmp);
	return rc;
}

static int write_value(tc_ctx *c, wbuf *w, const ProtobufCFieldDescriptor *f,
		       const void *slot, unsigned depth)
{
	const ProtobufCEnumValue *ev;
	const ProtobufCBinaryData *bd;
	const char *s;
	char b[48];

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		snprintf(b, sizeof b, "%" PRId32, *(const int32_t *)slot);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(b, sizeof b, "%" PRIu32, *(const uint32_t *)slot);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(b, sizeof b, "\"%" PRId64 "\"", *(const int64_t *)slot);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(b, sizeof b, "\"%" PRIu64 "\"",
			 *(const uint64_t *)slot);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		write_float(w, *(const float *)slot);
		return 0;
	case PROTOBUF_C_TYPE_DOUBLE:
		write_double(w, *(const double *)slot);
		return 0;
	case PROTOBUF_C_TYPE_BOOL:
		w_puts(w, *(const protobuf_c_boolean *)slot ? "true" : "false");
		return 0;
	case PROTOBUF_C_TYPE_ENUM:
		ev = protobuf_c_enum_descriptor_get_value(
			f->descriptor, *(const int32_t *)slot);
		if (!ev) {
			/* A value this build does not know: the number. */
			snprintf(b, sizeof b, "%" PRId32,
				 *(const int32_t *)slot);
			break;
		}
		w_putc(w, '"');
		w_puts(w, ev->name);
		w_putc(w, '"');
		return 0;
	case PROTOBUF_C_TYPE_STRING:
		s = *(char *const *)slot;
		return write_string(c, w, s ? s : "", s ? strlen(s) : 0);
	case PROTOBUF_C_TYPE_BYTES:
		bd = slot;
		if (bd->len && !bd->data)
			return fail(c, TC_ERR_INVALID, "bytes without data");
		write_base64(w, bd->data, bd->len);
		return 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return write_message_value(c, w, f->descriptor,
					   *(const ProtobufCMessage *const *)slot,
					   depth);
	}
	w_puts(w, b);
	return 0;
}

/* A map key as JSON shows it, without quotes: a string as it is, other
 * types formatted into b. */
static const char *key_text(const ProtobufCFieldDescriptor *kf,
			    const ProtobufCMessage *e, char b[32], size_t *len)
{
	const void *slot = CMEMBER(e, kf->offset);
	const char *s;

	switch (kf->type) {
	case PROTOBUF_C_TYPE_STRING:
		s = *(char *const *)slot;
		s = s ? s : "";
		*len = strlen(s);
		return s;
	case PROTOBUF_C_TYPE_BOOL:
		s = *(const protobuf_c_boolean *)slot ? "true" : "false";
		*len = strlen(s);
		return s;
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		snprintf(b, 32, "%" PRId32, *(const int32_t *)slot);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(b, 32, "%" PRIu32, *(const uint32_t *)slot);
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(b, 32, "%" PRId64, *(const int64_t *)slot);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(b, 32, "%" PRIu64, *(const uint64_t *)slot);
		break;
	default:
		/* protoc allows no other key type. */
		b[0] = '\0';
		break;
	}
	*len = strlen(b);
	return b;
}

typedef struct key_order {
	ProtobufCMessage *const *entries;
	const ProtobufCFieldDescriptor *kf;
} key_order;

static int key_cmp(const key_order *ko, size_t i, size_t j)
{
	char bi[32], bj[32];
	size_t li, lj;
	const char *ti = key_text(ko->kf, ko->entries[i], bi, &li);
	const char *tj = key_text(ko->kf, ko->entries[j], bj, &lj);
	int r = memcmp(ti, tj, li < lj ? li : lj);

	if (r)
		return r;
	return li < lj ? -1 : li > lj;
}

/* By key, then by position. */
static int key_index_cmp(const void *a, const void *b, void *arg)
{
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int r = key_cmp(arg, i, j);

	if (r)
		return r;
	return i < j ? -1 : i > j;
}

/*
 * The wire allows a map key twice; readers keep the last value. Sets
 * *shadowed to a flag per entry that a later one repeats (NULL when there
 * is none), sorting an index so that a large map costs n log n.
 */
static int find_shadowed(tc_ctx *c, const ProtobufCFieldDescriptor *kf,
			 ProtobufCMessage *const *entries, size_t n,
			 unsigned char **shadowed)
{
	key_order ko = { entries, kf };
	unsigned char *flags = NULL;
	size_t *idx;
	bool any = false;

	*shadowed = NULL;
	if (n < 2)
		return 0;
	if (!(idx = malloc(n * sizeof *idx)) || !(flags = calloc(n, 1))) {
		free(idx);
		return nomem(c);
	}
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof *idx, key_index_cmp, &ko);
	for (size_t k = 0; k + 1 < n; k++)
		if (key_cmp(&ko, idx[k], idx[k + 1]) == 0) {
			flags[idx[k]] = 1;
			any = true;
		}
	free(idx);
	if (any)
		*shadowed = flags;
	else
		free(flags);
	return 0;
}

static int write_map(tc_ctx *c, wbuf *w, const ProtobufCFieldDescriptor *f,
		     ProtobufCMessage *const *entries, size_t n, unsigned depth)
{
	const ProtobufCMessageDescriptor *ed = f->descriptor;
	const ProtobufCFieldDescriptor *kf = &ed->fields[0];
	const ProtobufCFieldDescriptor *vf = &ed->fields[1];
	unsigned char *shadowed = NULL;
	bool first = true;
	int rc;

	for (size_t i = 0; i < n; i++)
		if (!entries[i])
			return fail(c, TC_ERR_INVALID, "map entry %zu is NULL",
				    i);
	if ((rc = find_shadowed(c, kf, entries, n, &shadowed)))
		return rc;
	w_putc(w, '{');
	for (size_t i = 0; i < n; i++) {
		char b[32];
		size_t klen, mark;
		const char *key;

		if (shadowed && shadowed[i])
			continue;
		if (!first)
			w_putc(w, ',');
		first = false;
		key = key_text(kf, entries[i], b, &klen);
		mark = path_key(c, key, klen);
		if ((rc = write_string(c, w, key, klen)))
			goto out;
		w_putc(w, ':');
		if ((rc = write_value(c, w, vf, CMEMBER(entries[i], vf->offset),
				      depth)))
			goto out;
		path_pop(c, mark);
	}
	w_putc(w, '}');
out:
	free(shadowed);
	return rc;
}

static int write_field(tc_ctx *c, wbuf *w, const ProtobufCMessage *m,
		       const ProtobufCFieldDescriptor *f, unsigned depth)
{
	const void *slot = CMEMBER(m, f->offset);
	const char *arr;
	size_t n, esz = value_size(f->type);

	if (f->label != PROTOBUF_C_LABEL_REPEATED)
		return write_value(c, w, f, slot, depth);
	n = *(const size_t *)CMEMBER(m, f->quantifier_offset);
	arr = *(const char *const *)slot;
	if (n && !arr)
		return fail(c, TC_ERR_INVALID,
			    "%zu elements counted but no array", n);
	if (is_map(m->descriptor, f))
		return write_map(c, w, f, (ProtobufCMessage *const *)arr, n,
				 depth);
	w_putc(w, '[');
	for (size_t i = 0; i < n; i++) {
		size_t mark = path_index(c, i);
		int rc;

		if (i)
			w_putc(w, ',');
		if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    !*(ProtobufCMessage *const *)(arr + i * esz))
			return fail(c, TC_ERR_INVALID, "element is NULL");
		if ((rc = write_value(c, w, f, arr + i * esz, depth)))
			return rc;
		path_pop(c, mark);
	}
	w_putc(w, ']');
	return 0;
}

/*
 * Whether a field is printed: always without presence (defaults are
 * emitted), when set with it. "Set" is what protobuf-c's pack would send:
 * a oneof member when the case names it (a string or message also needs
 * its pointer), an optional scalar when has_ is true, an optional string
 * when its pointer is neither NULL nor the declared default, a message
 * when its pointer is not NULL.
 */
static bool is_printed(const ProtobufCMessage *m,
		       const ProtobufCFieldDescriptor *f)
{
	const void *p = NULL;

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return true;
	/* Only strings and messages are pointers: a scalar may be the last
	 * 4 bytes of the struct. */
	if (f->type == PROTOBUF_C_TYPE_STRING ||
	    f->type == PROTOBUF_C_TYPE_MESSAGE)
		p = *(const void *const *)CMEMBER(m, f->offset);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		if (*(const uint32_t *)CMEMBER(m, f->quantifier_offset) != f->id)
			return false;
		if (f->type == PROTOBUF_C_TYPE_STRING)
			return p && p != f->default_value;
		return f->type != PROTOBUF_C_TYPE_MESSAGE || p;
	}
	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return p != NULL;
	if (f->type == PROTOBUF_C_TYPE_STRING &&
	    f->label == PROTOBUF_C_LABEL_OPTIONAL)
		return p && p != f->default_value;
	if (has_flag(f))
		return *(const protobuf_c_boolean *)CMEMBER(m,
							   f->quantifier_offset);
	return true;
}

static int write_object(tc_ctx *c, wbuf *w, const ProtobufCMessage *m,
			unsigned depth)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	bool first = true;
	char name[128];

	if (depth > c->max_depth)
		return too_deep(c);
	w_putc(w, '{');
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		size_t mark;
		int rc;

		if (!is_printed(m, f))
			continue;
		if (!first)
			w_putc(w, ',');
		first = false;
		w_putc(w, '"');
		if (strlen(f->name) < sizeof name) {
			/* Once for the key and the error path alike. */
			size_t n = camel(f->name, name, sizeof name);

			w_put(w, name, n);
			w_put(w, "\":", 2);
			mark = path_field(c, name, n);
		} else {
			w_camel(w, f->name);
			w_put(w, "\":", 2);
			mark = path_field_camel(c, f->name);
		}
		if ((rc = write_field(c, w, m, f, depth + 1)))
			return rc;
		if (w->nomem)
			return TC_ERR_NOMEM;
		path_pop(c, mark);
	}
	w_putc(w, '}');
	return 0;
}

int tc_to_json(const ProtobufCMessage *msg, const tc_limits *limits,
	       char **out, size_t *out_len, tc_error *err)
{
	tc_ctx c;
	wbuf w = {0};
	int rc;

	ctx_init(&c, NULL, limits, err);
	*out = NULL;
	if (out_len)
		*out_len = 0;
	if (wkt_of(msg->descriptor) == WKT_UNSUPPORTED)
		rc = unsupported(&c, msg->descriptor);
	else
		rc = write_object(&c, &w, msg, 1);
	if (w.nomem)
		rc = nomem(&c);
	if (rc) {
		free(w.p);
		return rc;
	}
	w.p[w.len] = '\0';
	*out = w.p;
	if (out_len)
		*out_len = w.len;
	return 0;
}

/* ---- one field from text ---- */

/* Frees a value that a field is about to lose, by free_unpacked's rules
 * (declared defaults are not the message's to free). */
static void free_value(tc_ctx *c, const ProtobufCFieldDescriptor *f,
		       void *slot)
{
	void *p;
	const ProtobufCBinaryData *def;

	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		p = *(char **)slot;
		if (p != f->default_value)
			pb_free(c, p);
		break;
	case PROTOBUF_C_TYPE_BYTES:
		p = ((ProtobufCBinaryData *)slot)->data;
		def = f->default_value;
		if (!def || def->data != p)
			pb_free(c, p);
		break;
	case PROTOBUF_C_TYPE_MESSAGE:
		p = *(ProtobufCMessage **)slot;
		if (p && p != f->default_value)
			protobuf_c_message_free_unpacked(p, c->alloc);
		break;
	default:
		break;
	}
}

/* The next dot-separated name of a path. */
static size_t segment(const char *s, const char **next)
{
	const char *dot = strchr(s, '.');

	*next = dot ? dot + 1 : NULL;
	return dot ? (size_t)(dot - s) : strlen(s);
}

/* Whether the oneof member f of m may be set: no other member is. */
static int oneof_free(tc_ctx *c, const ProtobufCMessage *m,
		      const ProtobufCFieldDescriptor *f)
{
	uint32_t which;
	const ProtobufCFieldDescriptor *other;
	char name[PATH_CAP];

	if (!m || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
		return 0;
	which = *(const uint32_t *)CMEMBER(m, f->quantifier_offset);
	if (which == 0 || which == f->id)
		return 0;
	other = protobuf_c_message_descriptor_get_field(m->descriptor, which);
	camel(other ? other->name : "?", name, sizeof name);
	return fail(c, TC_ERR_INVALID,
		    "only one field of a oneof may be set, and %s is set",
		    name);
}

/*
 * Resolves path against msg without changing anything: every name must
 * exist, lead through singular messages, stay within the depth limit and
 * not collide with a oneof member already set, and the last must be
 * settable from text. Returns the last field in *out.
 */
static int resolve_path(tc_ctx *c, const ProtobufCMessage *msg,
			const char *path, const ProtobufCFieldDescriptor **out)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const ProtobufCMessage *cur = msg;
	const ProtobufCFieldDescriptor *f;
	const char *seg = path, *next;
	unsigned level = 1;
	int rc;
	enum wkt k;

	for (;;) {
		size_t n = segment(seg, &next);

		path_field(c, seg, n);
		if (n == 0)
			return fail(c, TC_ERR_INVALID, "empty field name");
		if (!(f = find_field(d, seg, n)))
			return fail(c, TC_ERR_INVALID, "no such field in %s",
				    d->name);
		if ((rc = oneof_free(c, cur, f)))
			return rc;
		if (!next)
			break;
		if (f->type != PROTOBUF_C_TYPE_MESSAGE ||
		    f->label == PROTOBUF_C_LABEL_REPEATED ||
		    wkt_of(f->descriptor) != WKT_NONE)
			return fail(c, TC_ERR_INVALID,
				    "not a singular message: cannot name a "
				    "field inside it");
		if (++level > c->max_depth)
			return too_deep(c);
		if (cur) {
			/* Walk on through what exists; past it, the rest is
			 * created and cannot collide. */
			const ProtobufCMessage *sub =
				*(ProtobufCMessage *const *)CMEMBER(cur,
								    f->offset);
			if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
			    *(const uint32_t *)CMEMBER(cur, f->quantifier_offset)
				    != f->id)
				sub = NULL;
			cur = sub;
		}
		d = f->descriptor;
		seg = next;
	}
	if (is_map(d, f))
		return fail(c, TC_ERR_INVALID,
			    "a map cannot be set from a parameter");
	if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
		k = wkt_of(f->descriptor);
		if (k == WKT_UNSUPPORTED)
			return unsupported(c, f->descriptor);
		if (k == WKT_NONE)
			return fail(c, TC_ERR_INVALID,
				    "a message: name one of its fields");
	}
	*out = f;
	return 0;
}

int tc_merge_field_from_string(ProtobufCMessage *msg, const char *path,
			       const char *value, size_t value_len,
			       ProtobufCAllocator *allocator,
			       const tc_limits *limits, tc_error *err)
{
	tc_ctx c;
	const ProtobufCFieldDescriptor *f = NULL;
	ProtobufCMessage *m = msg;
	const char *seg = path, *next;
	char *text = NULL;
	size_t esz;
	int rc;
	/* The parsed value, moved into the message only once it is good. */
	union {
		int64_t i;
		double d;
		void *p;
		ProtobufCBinaryData bd;
	} tmp;

	ctx_init(&c, allocator, limits, err);
	memset(&tmp, 0, sizeof tmp);
	if ((rc = resolve_path(&c, msg, path, &f)))
		return rc;
	esz = value_size(f->type);
	/* The number and enum readers need a terminator. */
	if (!(text = malloc(value_len + 1)))
		return nomem(&c);
	if (value_len)
		memcpy(text, value, value_len);
	text[value_len] = '\0';
	rc = parse_text(&c, f, text, value_len, &tmp);
	free(text);
	if (rc)
		goto fail_value;

	/* Now change msg: create what is missing on the path. */
	for (;;) {
		size_t n = segment(seg, &next);
		const ProtobufCFieldDescriptor *sf =
			find_field(m->descriptor, seg, n);
		ProtobufCMessage **sub;
		uint32_t *which = NULL;

		if (!next)
			break;
		sub = MEMBER(m, sf->offset);
		if (sf->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
			which = MEMBER(m, sf->quantifier_offset);
		if (!*sub || (which && *which != sf->id)) {
			if (!(*sub = new_message(&c, sf->descriptor))) {
				rc = nomem(&c);
				goto fail_value;
			}
			if (which)
				*which = sf->id;
		}
		m = *sub;
		seg = next;
	}
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t *count = MEMBER(m, f->quantifier_offset);
		char **arr = MEMBER(m, f->offset);
		char *grown;

		/* ProtobufCAllocator has no realloc. */
		if (*count >= SIZE_MAX / esz - 1 ||
		    !(grown = pb_alloc(&c, (*count + 1) * esz))) {
			rc = nomem(&c);
			goto fail_value;
		}
		if (*count)
			memcpy(grown, *arr, *count * esz);
		memcpy(grown + *count * esz, &tmp, esz);
		pb_free(&c, *arr);
		*arr = grown;
		(*count)++;
		return 0;
	}
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *which = MEMBER(m, f->quantifier_offset);

		/* Another member's bytes are not this member's to free. */
		if (*which == f->id)
			free_value(&c, f, MEMBER(m, f->offset));
		*which = f->id;
	} else {
		free_value(&c, f, MEMBER(m, f->offset));
	}
	memcpy(MEMBER(m, f->offset), &tmp, esz);
	if (has_flag(f))
		*(protobuf_c_boolean *)MEMBER(m, f->quantifier_offset) = 1;
	return 0;

fail_value:
	free_value(&c, f, &tmp);
	return rc;
}
