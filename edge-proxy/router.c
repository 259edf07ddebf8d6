/*
 * router.c - path templates parsed once, matched per request. See router.h.
 */
#include "router.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Segments of one template; more would be a mistake, not an API. */
#define MAX_SEGS 32

typedef enum seg_kind { SEG_LITERAL, SEG_STAR, SEG_DOUBLE_STAR } seg_kind;

typedef struct seg {
	seg_kind kind;
	const char *lit;      /* SEG_LITERAL: points into route.text */
	size_t len;
	int var;              /* index into route.vars, or -1 */
} seg;

typedef struct route {
	const rpc_http_route *r;
	char *text;           /* copy of the pattern, cut into literals */
	seg segs[MAX_SEGS];
	size_t n_segs;
	const char *verb;     /* custom ":verb" suffix, or NULL */
	char *fields[EDGE_ROUTE_MAX_VARS];
	size_t n_vars;
	int literals;         /* literal segments: more is more specific */
	bool double_star;
} route;

struct edge_router {
	route *routes;
	size_t n;
};

/* ---- template parsing ------------------------------------------------------ */

typedef struct parser {
	route *rt;
	char *p, *end;
	char *err;
	size_t errlen;
} parser;

static bool fail(parser *ps, const char *why)
{
	snprintf(ps->err, ps->errlen, "%s %s: %s", ps->rt->r->verb,
		 ps->rt->r->pattern, why);
	return false;
}

static bool add_seg(parser *ps, seg s)
{
	route *rt = ps->rt;

	if (rt->n_segs == MAX_SEGS)
		return fail(ps, "too many segments");
	if (rt->n_segs > 0 && rt->segs[rt->n_segs - 1].kind == SEG_DOUBLE_STAR)
		return fail(ps, "\"**\" must be the last segment");
	if (s.kind == SEG_LITERAL)
		rt->literals++;
	if (s.kind == SEG_DOUBLE_STAR)
		rt->double_star = true;
	rt->segs[rt->n_segs++] = s;
	return true;
}

/* Segments up to the end of the template or, inside a variable, up to
 * '}'. Literal text is NUL-terminated in place. */
static bool parse_segments(parser *ps, int var)
{
	for (;;) {
		char *start = ps->p;
		seg s = { .var = var };

		if (*ps->p == '{') {
			char *name = ++ps->p;
			int v;

			if (var >= 0)
				return fail(ps, "nested variable");
			while (ps->p < ps->end && *ps->p != '}' && *ps->p != '=')
				ps->p++;
			if (ps->p == ps->end || ps->p == name)
				return fail(ps, "bad variable");
			if (ps->rt->n_vars == EDGE_ROUTE_MAX_VARS)
				return fail(ps, "too many variables");
			v = (int)ps->rt->n_vars;
			ps->rt->fields[ps->rt->n_vars++] = name;
			if (*ps->p == '=') {
				*ps->p++ = '\0';
				if (!parse_segments(ps, v))
					return false;
				if (*ps->p != '}')
					return fail(ps, "variable without '}'");
			} else {
				s.kind = SEG_STAR;
				s.var = v;
				if (!add_seg(ps, s))
					return false;
			}
			*ps->p++ = '\0';   /* the '}' ends the field name or pattern */
		} else {
			while (ps->p < ps->end && *ps->p != '/' && *ps->p != '}')
				ps->p++;
			s.len = (size_t)(ps->p - start);
			if (s.len == 0)
				return fail(ps, "empty segment");
			if (s.len == 1 && *start == '*')
				s.kind = SEG_STAR;
			else if (s.len == 2 && start[0] == '*' && start[1] == '*')
				s.kind = SEG_DOUBLE_STAR;
			else if (memchr(start, '*', s.len) || memchr(start, '{', s.len))
				return fail(ps, "'*' or '{' inside a literal");
			else
				s.kind = SEG_LITERAL;
			s.lit = start;
			if (!add_seg(ps, s))
				return false;
		}
		if (ps->p == ps->end || *ps->p == '}')
			return true;
		if (*ps->p != '/')
			return fail(ps, "expected '/'");
		*ps->p++ = '\0';
	}
}

static bool parse_route(route *rt, const rpc_http_route *r, char *err,
			size_t errlen)
{
	parser ps = { .rt = rt, .err = err, .errlen = errlen };
	size_t len = strlen(r->pattern);
	char *colon = NULL;
	int depth = 0;

	rt->r = r;
	rt->text = malloc(len + 1);
	if (rt->text == NULL) {
		snprintf(err, errlen, "out of memory");
		return false;
	}
	memcpy(rt->text, r->pattern, len + 1);
	if (rt->text[0] != '/')
		return fail(&ps, "does not start with '/'");
	/* A ':' after the last '/' outside braces starts the custom verb. */
	for (char *c = rt->text; *c; c++) {
		if (*c == '{')
			depth++;
		else if (*c == '}')
			depth--;
		else if (depth == 0 && *c == '/')
			colon = NULL;
		else if (depth == 0 && *c == ':' && colon == NULL)
			colon = c;
	}
	ps.end = rt->text + len;
	if (colon != NULL) {
		*colon = '\0';
		rt->verb = colon + 1;
		ps.end = colon;
		if (rt->verb[0] == '\0')
			return fail(&ps, "empty custom verb");
	}
	ps.p = rt->text + 1;
	if (ps.p == ps.end)
		return true;   /* "/" */
	if (!parse_segments(&ps, -1))
		return false;
	if (ps.p != ps.end)
		return fail(&ps, "unbalanced '}'");
	return true;
}

static bool same_template(const route *a, const route *b)
{
	if (a->n_segs != b->n_segs ||
	    (a->verb == NULL) != (b->verb == NULL) ||
	    (a->verb && strcmp(a->verb, b->verb) != 0))
		return false;
	for (size_t i = 0; i < a->n_segs; i++) {
		const seg *x = &a->segs[i], *y = &b->segs[i];

		if (x->kind != y->kind)
			return false;
		if (x->kind == SEG_LITERAL &&
		    (x->len != y->len || memcmp(x->lit, y->lit, x->len) != 0))
			return false;
	}
	return true;
}

edge_router *edge_router_new(const rpc_service_desc *const *services,
			     size_t n_services, char *err, size_t errlen)
{
	edge_router *r = calloc(1, sizeof(*r));
	size_t total = 0;

	if (r == NULL)
		goto nomem;
	for (size_t i = 0; i < n_services; i++)
		total += services[i]->n_http_routes;
	r->routes = calloc(total ? total : 1, sizeof(*r->routes));
	if (r->routes == NULL)
		goto nomem;
	for (size_t i = 0; i < n_services; i++) {
		for (size_t k = 0; k < services[i]->n_http_routes; k++) {
			route *rt = &r->routes[r->n++];

			if (!parse_route(rt, &services[i]->http_routes[k], err,
					 errlen))
				goto fail;
			for (size_t j = 0; j + 1 < r->n; j++) {
				if (strcmp(r->routes[j].r->verb, rt->r->verb) == 0 &&
				    same_template(&r->routes[j], rt)) {
					snprintf(err, errlen, "%s %s and %s %s are the "
						 "same route (%s, %s)",
						 rt->r->verb, rt->r->pattern,
						 r->routes[j].r->verb,
						 r->routes[j].r->pattern,
						 r->routes[j].r->method->path,
						 rt->r->method->path);
					goto fail;
				}
			}
		}
	}
	return r;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	edge_router_free(r);
	return NULL;
}

void edge_router_free(edge_router *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->routes[i].text);
	free(r->routes);
	free(r);
}

size_t edge_router_count(const edge_router *r)
{
	return r->n;
}

/* ---- matching --------------------------------------------------------------- */

typedef struct span {
	const char *p;
	size_t len;
} span;

/* Where each variable's text starts and ends in the path. */
typedef struct binding {
	const char *start[EDGE_ROUTE_MAX_VARS];
	const char *end[EDGE_ROUTE_MAX_VARS];
} binding;

static bool match_route(const route *rt, const span *segs, size_t n,
			binding *b)
{
	size_t i;

	for (i = 0; i < rt->n_vars; i++)
		b->start[i] = b->end[i] = NULL;
	for (i = 0; i < rt->n_segs; i++) {
		const seg *s = &rt->segs[i];
		const char *from, *to;

		if (s->kind == SEG_DOUBLE_STAR) {
			/* The rest of the path, possibly nothing. */
			from = i < n ? segs[i].p : (n ? segs[n - 1].p + segs[n - 1].len : NULL);
			to = n ? segs[n - 1].p + segs[n - 1].len : from;
			i = n;
			if (s->var >= 0) {
				if (b->start[s->var] == NULL)
					b->start[s->var] = from;
				b->end[s->var] = to;
			}
			return true;
		}
		if (i >= n)
			return false;
		if (s->kind == SEG_LITERAL) {
			if (segs[i].len != s->len ||
			    memcmp(segs[i].p, s->lit, s->len) != 0)
				return false;
		} else if (segs[i].len == 0) {
			return false;   /* "*" is one non-empty segment */
		}
		if (s->var >= 0) {
			if (b->start[s->var] == NULL)
				b->start[s->var] = segs[i].p;
			b->end[s->var] = segs[i].p + segs[i].len;
		}
	}
	return i == n;
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long edge_url_decode(const char *p, size_t len, char *out, bool plus_is_space)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = p[i];

		if (c == '+' && plus_is_space) {
			c = ' ';
		} else if (c == '%') {
			if (len - i < 3 || hex(p[i + 1]) < 0 || hex(p[i + 2]) < 0)
				return -1;
			c = (char)(hex(p[i + 1]) << 4 | hex(p[i + 2]));
			i += 2;
		}
		if (c == '\0')
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return (long)o;
}

/* Percent-decodes [p, p+len) into a new string; NULL on a bad escape or
 * a NUL (*bad set) or no memory. */
static char *decode(const char *p, size_t len, bool *bad)
{
	char *out = malloc(len + 1);

	*bad = false;
	if (out == NULL)
		return NULL;
	if (edge_url_decode(p, len, out, false) < 0) {
		*bad = true;
		free(out);
		return NULL;
	}
	return out;
}

static void append_allow(char *allow, size_t cap, const char *verb)
{
	size_t at = strlen(allow);
	const char *p = allow;
	size_t vlen = strlen(verb);

	/* Each method once. */
	while ((p = strstr(p, verb)) != NULL) {
		if ((p == allow || p[-1] == ' ') &&
		    (p[vlen] == ',' || p[vlen] == '\0'))
			return;
		p += vlen;
	}
	snprintf(allow + at, cap - at, "%s%s", at ? ", " : "", verb);
}

edge_route_result edge_router_match(const edge_router *r, const char *method,
				    const char *path, size_t len, edge_match *m,
				    char *allow, size_t allow_cap)
{
	span segs[MAX_SEGS + 1];
	size_t n = 0;
	const route *best = NULL;
	binding best_b, b;
	bool path_known = false;

	memset(m, 0, sizeof(*m));
	if (allow != NULL && allow_cap > 0)
		allow[0] = '\0';
	if (len == 0 || path[0] != '/')
		return EDGE_ROUTE_NOT_FOUND;

	for (size_t i = 0; i < r->n; i++) {
		const route *rt = &r->routes[i];
		size_t plen = len, vlen = rt->verb ? strlen(rt->verb) : 0;
		const char *p, *end;

		/* A custom verb must end the path (":get"); it is not part
		 * of the last segment then. */
		if (rt->verb) {
			if (len < vlen + 2 || path[len - vlen - 1] != ':' ||
			    memcmp(path + len - vlen, rt->verb, vlen) != 0)
				continue;
			plen = len - vlen - 1;
		}
		n = 0;
		p = path + 1;
		end = path + plen;
		if (plen > 1 || rt->n_segs > 0) {
			for (;;) {
				const char *slash = memchr(p, '/', (size_t)(end - p));
				const char *stop = slash ? slash : end;

				if (n == MAX_SEGS + 1)
					break;
				segs[n].p = p;
				segs[n].len = (size_t)(stop - p);
				n++;
				if (!slash)
					break;
				p = slash + 1;
			}
		}
		if (n == MAX_SEGS + 1 || !match_route(rt, segs, n, &b))
			continue;
		path_known = true;
		if (strcmp(rt->r->verb, method) != 0) {
			if (allow != NULL && allow_cap > 0)
				append_allow(allow, allow_cap, rt->r->verb);
			continue;
		}
		if (best == NULL || rt->literals > best->literals ||
		    (rt->literals == best->literals && !rt->double_star &&
		     best->double_star)) {
			best = rt;
			best_b = b;
		}
	}
	if (best == NULL)
		return path_known ? EDGE_ROUTE_METHOD_NOT_ALLOWED : EDGE_ROUTE_NOT_FOUND;

	m->route = best->r;
	for (size_t v = 0; v < best->n_vars; v++) {
		bool bad;
		const char *s = best_b.start[v], *e = best_b.end[v];

		m->vars[v].field = best->fields[v];
		m->vars[v].value = decode(s ? s : "", s ? (size_t)(e - s) : 0, &bad);
		m->n_vars = v + 1;
		if (m->vars[v].value == NULL) {
			edge_match_dispose(m);
			return bad ? EDGE_ROUTE_BAD_PATH : EDGE_ROUTE_NO_MEMORY;
		}
	}
	return EDGE_ROUTE_OK;
}

void edge_match_dispose(edge_match *m)
{
	for (size_t i = 0; i < m->n_vars; i++)
		free(m->vars[i].value);
	memset(m, 0, sizeof(*m));
}
