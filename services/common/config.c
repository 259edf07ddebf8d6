/*
 * config.c - the configuration table: .env loading, parsing, validation
 * and logging of effective values.
 */
#include "services/common/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rpc/log.h"

/* A .env line longer than this is refused: nothing legitimate is that
 * long, and the cap keeps a wrong file (a binary, a dump) from being
 * slurped into the environment. */
#define ENV_LINE_MAX (64 * 1024)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static bool is_key_start(int c)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_key_char(int c)
{
	return is_key_start(c) || (c >= '0' && c <= '9');
}

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* After a closing quote only blanks and a comment may follow: anything
 * else means the quoting is not what the author thought it was. */
static bool only_trailer(const char *s)
{
	s = skip_ws(s);
	return *s == '\0' || *s == '#';
}

/*
 * Parses the value part of a line into out (at least strlen(s)+1 bytes,
 * since unquoting only shrinks). Double quotes understand \n \t \r \" \\
 * (as shells and docker compose do); single quotes are literal; an
 * unquoted value ends at " #" (a comment) and loses trailing blanks.
 * Returns false on an unterminated quote or junk after the closing quote.
 */
static bool parse_value(const char *s, char *out)
{
	char *o = out;

	s = skip_ws(s);
	if (*s == '"') {
		for (s++; *s && *s != '"'; s++) {
			if (*s == '\\' && s[1]) {
				s++;
				switch (*s) {
				case 'n': *o++ = '\n'; break;
				case 't': *o++ = '\t'; break;
				case 'r': *o++ = '\r'; break;
				case '"': *o++ = '"'; break;
				case '\\': *o++ = '\\'; break;
				default:
					/* Unknown escapes stay as written, so a
					 * Windows path or a regex survives. */
					*o++ = '\\';
					*o++ = *s;
				}
				continue;
			}
			*o++ = *s;
		}
		if (*s != '"' || !only_trailer(s + 1))
			return false;
		*o = '\0';
		return true;
	}
	if (*s == '\'') {
		for (s++; *s && *s != '\''; s++)
			*o++ = *s;
		if (*s != '\'' || !only_trailer(s + 1))
			return false;
		*o = '\0';
		return true;
	}
	for (; *s; s++) {
		/* "#" starts a comment only after a blank, so values such as
		 * "abc#def" (a password) stay whole. */
		if (*s == '#' && (o == out || o[-1] == ' ' || o[-1] == '\t'))
			break;
		*o++ = *s;
	}
	while (o > out && (o[-1] == ' ' || o[-1] == '\t'))
		o--;
	*o = '\0';
	return true;
}

int cfg_load_env_file(const char *path, char *err, size_t errlen)
{
	FILE *f;
	char *line = NULL, *value = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0, rc = 0;

	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT)
			return 1;
		set_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *p, *key;
		size_t klen;

		lineno++;
		if (n > ENV_LINE_MAX) {
			set_err(err, errlen, "%s:%d: line too long", path, lineno);
			rc = -1;
			goto out;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		p = (char *)skip_ws(line);
		if (*p == '\0' || *p == '#')
			continue;
		/* "export KEY=VALUE" so the same file can be sourced by sh. */
		if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t'))
			p = (char *)skip_ws(p + 6);
		key = p;
		if (!is_key_start((unsigned char)*p)) {
			set_err(err, errlen, "%s:%d: expected KEY=VALUE", path,
				lineno);
			rc = -1;
			goto out;
		}
		while (is_key_char((unsigned char)*p))
			p++;
		klen = (size_t)(p - key);
		p = (char *)skip_ws(p);
		if (*p != '=') {
			set_err(err, errlen, "%s:%d: expected KEY=VALUE", path,
				lineno);
			rc = -1;
			goto out;
		}
		key[klen] = '\0';
		free(value);
		value = malloc(strlen(p + 1) + 1);
		if (!value) {
			set_err(err, errlen, "%s: out of memory", path);
			rc = -1;
			goto out;
		}
		/* The message names the line, never the value: it may be a
		 * password. */
		if (!parse_value(p + 1, value)) {
			set_err(err, errlen, "%s:%d: %s: unterminated quote or "
				"text after the closing quote", path, lineno, key);
			rc = -1;
			goto out;
		}
		if (setenv(key, value, 0) != 0) {
			set_err(err, errlen, "%s:%d: %s: %s", path, lineno, key,
				strerror(errno));
			rc = -1;
			goto out;
		}
	}
	if (ferror(f)) {
		set_err(err, errlen, "%s: read error", path);
		rc = -1;
	}
out:
	free(value);
	free(line);
	fclose(f);
	return rc;
}

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* Strict decimal: no trailing junk, no silent wrap-around. */
static bool parse_ll(const char *s, long long *out)
{
	char *end;
	long long v;

	s = skip_ws(s);
	if (*s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *skip_ws(end) != '\0')
		return false;
	*out = v;
	return true;
}

static void int_bounds(const cfg_var *v, long long *min, long long *max)
{
	/* {0, 0} is what a table entry without limits leaves behind. */
	if (v->min == 0 && v->max == 0) {
		*min = LLONG_MIN;
		*max = LLONG_MAX;
	} else {
		*min = v->min;
		*max = v->max;
	}
}

static void *field(void *cfg, const cfg_var *v)
{
	return (char *)cfg + v->offset;
}

static const void *cfield(const void *cfg, const cfg_var *v)
{
	return (const char *)cfg + v->offset;
}

/* Sets one entry from its text; false with a message in err. */
static bool set_one(const cfg_var *v, const char *text, bool from_default,
		    void *cfg, char *err, size_t errlen)
{
	const char *shown = v->secret ? "(hidden)" : text;

	switch (v->type) {
	case CFG_STRING: {
		char *s = strdup(text);

		if (!s) {
			set_err(err, errlen, "%s: out of memory", v->env);
			return false;
		}
		*(char **)field(cfg, v) = s;
		return true;
	}
	case CFG_INT: {
		long long min, max, n;

		int_bounds(v, &min, &max);
		if (!parse_ll(text, &n) || n < min || n > max) {
			set_err(err, errlen,
				"%s: '%s' is not a number between %lld and %lld%s",
				v->env, shown, min, max,
				from_default ? " (bad default)" : "");
			return false;
		}
		*(long long *)field(cfg, v) = n;
		return true;
	}
	case CFG_BOOL: {
		bool b;

		if (!parse_bool(text, &b)) {
			set_err(err, errlen,
				"%s: '%s' is not a boolean (true/false, 1/0, "
				"yes/no, on/off)%s", v->env, shown,
				from_default ? " (bad default)" : "");
			return false;
		}
		*(bool *)field(cfg, v) = b;
		return true;
	}
	}
	set_err(err, errlen, "%s: unknown type", v->env);
	return false;
}

int cfg_load(const cfg_var *vars, size_t n, void *out, char *err,
	     size_t errlen)
{
	const char *path = getenv("ESTORE_ENV_FILE");
	int rc;

	/* Every string field starts NULL so that cfg_free is safe whatever
	 * happens below. */
	for (size_t i = 0; i < n; i++)
		if (vars[i].type == CFG_STRING)
			*(char **)field(out, &vars[i]) = NULL;

	if (path && *path) {
		rc = cfg_load_env_file(path, err, errlen);
		/* A file named explicitly must exist: a typo in the name
		 * would otherwise start the service on defaults. */
		if (rc == 1) {
			set_err(err, errlen, "ESTORE_ENV_FILE: %s does not exist",
				path);
			return -1;
		}
	} else {
		rc = cfg_load_env_file(".env", err, errlen);
	}
	if (rc < 0)
		return -1;

	for (size_t i = 0; i < n; i++) {
		const cfg_var *v = &vars[i];
		const char *text = getenv(v->env);
		bool from_default = false;

		/* An empty number or flag (VAR= in compose files) means
		 * "not set"; an empty string is a value, except for a
		 * required one. */
		if (text && *text == '\0' && v->type != CFG_STRING)
			text = NULL;
		if (text && *text == '\0' && v->type == CFG_STRING && !v->def)
			text = NULL;
		if (!text) {
			text = v->def;
			from_default = true;
		}
		if (!text) {
			set_err(err, errlen, "%s is required%s%s", v->env,
				v->help ? ": " : "", v->help ? v->help : "");
			goto fail;
		}
		if (!set_one(v, text, from_default, out, err, errlen))
			goto fail;
	}
	return 0;
fail:
	cfg_free(vars, n, out);
	return -1;
}

void cfg_log(const cfg_var *vars, size_t n, const void *cfg)
{
	if (!rpc_log_enabled(RPC_LOG_INFO))
		return;
	for (size_t i = 0; i < n; i++) {
		const cfg_var *v = &vars[i];
		const void *f = cfield(cfg, v);

		switch (v->type) {
		case CFG_STRING: {
			const char *s = *(char *const *)f;

			if (v->secret)
				rpc_log(RPC_LOG_INFO, "config", "%s=%s", v->env,
					s && *s ? "(set)" : "(empty)");
			else
				rpc_log(RPC_LOG_INFO, "config", "%s=%s", v->env,
					s ? s : "");
			break;
		}
		case CFG_INT:
			if (v->secret)
				rpc_log(RPC_LOG_INFO, "config", "%s=(set)", v->env);
			else
				rpc_log(RPC_LOG_INFO, "config", "%s=%lld", v->env,
					*(const long long *)f);
			break;
		case CFG_BOOL:
			if (v->secret)
				rpc_log(RPC_LOG_INFO, "config", "%s=(set)", v->env);
			else
				rpc_log(RPC_LOG_INFO, "config", "%s=%s", v->env,
					*(const bool *)f ? "true" : "false");
			break;
		}
	}
}

void cfg_free(const cfg_var *vars, size_t n, void *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < n; i++) {
		if (vars[i].type == CFG_STRING) {
			char **s = field(cfg, &vars[i]);

			free(*s);
			*s = NULL;
		}
	}
}

void cfg_host_port(const char *host, long long port, char *out, size_t cap)
{
	if (strchr(host, ':') && host[0] != '[')
		snprintf(out, cap, "[%s]:%lld", host, port);
	else
		snprintf(out, cap, "%s:%lld", host, port);
}
