/*
 * log.c - the log hook and the JSON-lines sink every estore program uses.
 */
#include "rpc/log.h"

#include "rpc/status.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Plain globals: set once before threads start (see log.h), then only read,
 * so no locking or atomics are needed on the hot path. */
static rpc_log_sink g_sink;
static void *g_user;
static rpc_log_level g_min = RPC_LOG_INFO;

void rpc_log_set_sink(rpc_log_sink sink, void *user, rpc_log_level min_level)
{
	g_sink = sink;
	g_user = user;
	g_min = min_level;
}

bool rpc_log_enabled(rpc_log_level level)
{
	return g_sink && level >= g_min;
}

static _Thread_local const char *t_request_id;

void rpc_log_set_request_id(const char *request_id)
{
	t_request_id = request_id;
}

static void vlog(rpc_log_level level, const char *component,
		 const rpc_log_field *fields, size_t n_fields, const char *fmt,
		 va_list ap)
{
	char small[512];
	char *msg = small;
	va_list again;

	/* Most lines fit on the stack; only long ones pay for a malloc. */
	va_copy(again, ap);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n >= 0 && (size_t)n >= sizeof(small)) {
		msg = malloc((size_t)n + 1);
		if (msg)
			vsnprintf(msg, (size_t)n + 1, fmt, again);
	}
	va_end(again);
	if (n < 0 || !msg)
		return;
	g_sink(g_user, level, component, t_request_id, fields, n_fields, msg);
	if (msg != small)
		free(msg);
}

void rpc_log(rpc_log_level level, const char *component, const char *fmt, ...)
{
	va_list ap;

	if (!rpc_log_enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, component, NULL, 0, fmt, ap);
	va_end(ap);
}

void rpc_log_fields(rpc_log_level level, const char *component,
		    const rpc_log_field *fields, size_t n_fields,
		    const char *fmt, ...)
{
	va_list ap;

	if (!rpc_log_enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, component, fields, n_fields, fmt, ap);
	va_end(ap);
}

static const char *const level_names[] = {
	[RPC_LOG_DEBUG] = "debug",
	[RPC_LOG_INFO] = "info",
	[RPC_LOG_WARN] = "warn",
	[RPC_LOG_ERROR] = "error",
};

int rpc_log_level_parse(const char *s, rpc_log_level *out)
{
	if (!s || !out)
		return RPC_ERR_INVALID;
	/* Case-insensitive because LOG_LEVEL=INFO is how operators write it;
	 * "warning" because that is the other common spelling. */
	for (int i = RPC_LOG_DEBUG; i <= RPC_LOG_ERROR; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (rpc_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = RPC_LOG_WARN;
		return 0;
	}
	return RPC_ERR_INVALID;
}

/* A growable line buffer; on allocation failure it stops growing and the
 * line is dropped, since a logger must never take the process down. */
struct line {
	char *p;
	size_t len, cap;
	bool heap; /* false while p is still the caller's stack buffer */
	bool oom;
};

static void put(struct line *l, const char *s, size_t n)
{
	if (l->oom)
		return;
	if (n > l->cap - l->len) {
		size_t cap = l->cap * 2;
		while (cap - l->len < n)
			cap *= 2;
		char *p = malloc(cap);
		if (!p) {
			l->oom = true;
			return;
		}
		memcpy(p, l->p, l->len);
		if (l->heap)
			free(l->p);
		l->p = p;
		l->heap = true;
		l->cap = cap;
	}
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void puts_lit(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

size_t rpc_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/* JSON string body. Invalid UTF-8 becomes U+FFFD: messages can carry bytes
 * from peers, and one bad byte must not make the whole line unparseable
 * for the log collector. */
static void put_json_str(struct line *l, const char *str)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str);

	put(l, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			put(l, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			switch (c) {
			case '\n': puts_lit(l, "\\n"); break;
			case '\r': puts_lit(l, "\\r"); break;
			case '\t': puts_lit(l, "\\t"); break;
			case '\b': puts_lit(l, "\\b"); break;
			case '\f': puts_lit(l, "\\f"); break;
			default: {
				char esc[6] = { '\\', 'u', '0', '0',
						hex[c >> 4], hex[c & 15] };
				put(l, esc, 6);
			}
			}
			i++;
		} else if (c < 0x80) {
			put(l, (const char *)s + i, 1);
			i++;
		} else {
			size_t k = rpc_utf8_len(s + i, n - i);
			if (k) {
				put(l, (const char *)s + i, k);
				i += k;
			} else {
				puts_lit(l, "\\ufffd");
				i++;
			}
		}
	}
	put(l, "\"", 1);
}

void rpc_log_json_sink(void *user, rpc_log_level level, const char *component,
		       const char *request_id, const rpc_log_field *fields,
		       size_t n_fields, const char *message)
{
	char stack[1024];
	struct line l = { .p = stack, .cap = sizeof(stack) };
	struct timespec ts;
	struct tm tm;
	char tbuf[40];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t tn = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(tbuf + tn, sizeof(tbuf) - tn, ".%03ldZ",
		 ts.tv_nsec / 1000000);

	puts_lit(&l, "{\"ts\":\"");
	puts_lit(&l, tbuf);
	puts_lit(&l, "\",\"level\":\"");
	puts_lit(&l, (unsigned)level <= RPC_LOG_ERROR ? level_names[level] :
							"unknown");
	puts_lit(&l, "\"");
	if (user) {
		puts_lit(&l, ",\"service\":");
		put_json_str(&l, user);
	}
	if (component) {
		puts_lit(&l, ",\"component\":");
		put_json_str(&l, component);
	}
	if (request_id) {
		puts_lit(&l, ",\"request_id\":");
		put_json_str(&l, request_id);
	}
	for (size_t i = 0; i < n_fields; i++) {
		char num[24];

		put(&l, ",", 1);
		put_json_str(&l, fields[i].key);
		put(&l, ":", 1);
		if (fields[i].str) {
			put_json_str(&l, fields[i].str);
		} else {
			snprintf(num, sizeof(num), "%lld", fields[i].num);
			puts_lit(&l, num);
		}
	}
	puts_lit(&l, ",\"msg\":");
	put_json_str(&l, message ? message : "");
	puts_lit(&l, "}\n");

	if (!l.oom) {
		/* One fwrite under the stream lock: lines from different
		 * threads never interleave, and the flush makes each line
		 * visible to the collector immediately. */
		flockfile(stdout);
		fwrite(l.p, 1, l.len, stdout);
		fflush(stdout);
		funlockfile(stdout);
	}
	if (l.heap)
		free(l.p);
}
