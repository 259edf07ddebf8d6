/*
 * util.c - text buffer, string pool and protoc-c compatible naming for
 * protoc-gen-estore.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

_Noreturn void cg_oom(void)
{
	fputs("protoc-gen-estore: out of memory\n", stderr);
	exit(1);
}

/* ---- text buffer ------------------------------------------------------- */

static void buf_reserve(cg_buf *b, size_t extra)
{
	size_t want = b->len + extra + 1;
	size_t cap;
	char *p;

	if (want <= b->cap)
		return;
	cap = b->cap ? b->cap : 4096;
	while (cap < want)
		cap *= 2;
	p = realloc(b->data, cap);
	if (p == NULL)
		cg_oom();
	b->data = p;
	b->cap = cap;
}

void cg_printf(cg_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		cg_oom();
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void cg_puts(cg_buf *b, const char *s)
{
	size_t n = strlen(s);

	buf_reserve(b, n);
	memcpy(b->data + b->len, s, n + 1);
	b->len += n;
}

void cg_buf_dispose(cg_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- string pool -------------------------------------------------------- */

static char **pool;
static size_t pool_len, pool_cap;

static char *pool_keep(char *s)
{
	if (s == NULL)
		cg_oom();
	if (pool_len == pool_cap) {
		size_t cap = pool_cap ? pool_cap * 2 : 256;
		char **p = realloc(pool, cap * sizeof(*p));

		if (p == NULL)
			cg_oom();
		pool = p;
		pool_cap = cap;
	}
	pool[pool_len++] = s;
	return s;
}

char *cg_strdup(const char *s)
{
	return pool_keep(strdup(s));
}

char *cg_sprintf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return pool_keep(s);
}

void cg_pool_free(void)
{
	for (size_t i = 0; i < pool_len; i++)
		free(pool[i]);
	free(pool);
	pool = NULL;
	pool_len = pool_cap = 0;
}

/* ---- names -------------------------------------------------------------- */

/* The C locale's ctype, spelled out: protoc-c runs in the C locale and the
 * generated names must not change with the builder's LANG. */
static bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static bool is_alnum(char c)
{
	return is_upper(c) || is_lower(c) || (c >= '0' && c <= '9');
}
static char to_upper(char c) { return is_lower(c) ? (char)(c - 'a' + 'A') : c; }
static char to_lower(char c) { return is_upper(c) ? (char)(c - 'A' + 'a') : c; }

char *cg_ident(const char *s)
{
	char *r = cg_strdup(s);

	for (char *p = r; *p; p++)
		if (!is_alnum(*p))
			*p = '_';
	return r;
}

char *cg_guard(const char *s)
{
	char *r = cg_ident(s);

	for (char *p = r; *p; p++)
		*p = to_upper(*p);
	return r;
}

char *cg_strip_proto(const char *path)
{
	size_t n = strlen(path);
	char *r = cg_strdup(path);

	if (n > 6 && strcmp(path + n - 6, ".proto") == 0)
		r[n - 6] = '\0';
	return r;
}

/* Appends one dotted piece of a full name, converted the way protoc-c's
 * ToCamel (camel = true) or CamelToLower (camel = false) does. */
static void append_piece(cg_buf *b, const char *p, size_t n, bool camel)
{
	char c[2] = { 0, 0 };

	if (camel) {
		bool next_upper = true;

		for (size_t i = 0; i < n; i++) {
			if (p[i] == '_') {
				next_upper = true;
				continue;
			}
			c[0] = next_upper ? to_upper(p[i]) : p[i];
			next_upper = false;
			cg_puts(b, c);
		}
		return;
	}
	/* An underscore goes before an upper-case letter only when the
	 * previous character was not upper-case, so "HTTPCode" → "httpcode". */
	bool was_upper = true;

	for (size_t i = 0; i < n; i++) {
		bool up = is_upper(p[i]);

		if (up && !was_upper)
			cg_puts(b, "_");
		c[0] = to_lower(p[i]);
		cg_puts(b, c);
		was_upper = up;
	}
}

static char *convert_full_name(const char *full, bool camel)
{
	cg_buf b = { 0 };
	const char *p = full;
	char *r;

	cg_puts(&b, "");
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		if (n > 0) {
			if (b.len > 0)
				cg_puts(&b, "__");
			append_piece(&b, p, n, camel);
		}
		p += n;
		if (*p == '.')
			p++;
	}
	r = cg_strdup(b.data);
	cg_buf_dispose(&b);
	return r;
}

char *cg_c_type(const char *full_name)
{
	return convert_full_name(full_name, true);
}

char *cg_c_lower(const char *full_name)
{
	return convert_full_name(full_name, false);
}

char *cg_camel_to_lower(const char *name)
{
	cg_buf b = { 0 };
	char *r;

	cg_puts(&b, "");
	append_piece(&b, name, strlen(name), false);
	r = cg_strdup(b.data);
	cg_buf_dispose(&b);
	return r;
}
