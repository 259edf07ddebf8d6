/*
 * config.h - service configuration as a table.
 *
 * Each service declares one static table of cfg_var entries describing its
 * struct of settings: environment variable, type, default, limits, whether
 * it is a secret. cfg_load reads an optional .env file (KEY=VALUE lines,
 * '#' comments, optional quotes; the real environment wins), validates
 * every entry and fails fast with a message naming the variable.
 * cfg_log prints the effective values once, secrets masked.
 */
#ifndef ESTORE_SVC_CONFIG_H
#define ESTORE_SVC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum cfg_type {
	CFG_STRING,   /* char *, malloc'd (freed by cfg_free) */
	CFG_INT,      /* long long, within [min, max] */
	CFG_BOOL,     /* bool: 1/0, true/false, yes/no, on/off */
} cfg_type;

typedef struct cfg_var {
	const char *env;      /* "DB_HOST" */
	cfg_type type;
	size_t offset;        /* offsetof(struct my_config, field) */
	const char *def;      /* default as text; NULL = required */
	long long min, max;   /* CFG_INT bounds; {0, 0} = no bounds */
	bool secret;          /* never logged */
	const char *help;     /* one line, for docs and errors */
} cfg_var;

/*
 * Fills *out from the environment, after loading the .env file named by
 * ESTORE_ENV_FILE or "./.env" when it exists (variables already in the
 * environment are not overridden). An empty value counts as unset for
 * numbers, booleans and required strings (compose's "VAR="); an optional
 * string may be empty. A file named by ESTORE_ENV_FILE must exist.
 * Returns 0, or -1 with a message in err (e.g. "DB_PORT: 'abc' is not a
 * number between 1 and 65535"; a secret's value is never quoted). On
 * failure nothing stays allocated.
 */
int cfg_load(const cfg_var *vars, size_t n, void *out, char *err,
	     size_t errlen);

/* Logs each effective value at info level (component "config"); secrets
 * are shown as "(set)" or "(empty)". */
void cfg_log(const cfg_var *vars, size_t n, const void *cfg);

/* Frees the strings cfg_load allocated. */
void cfg_free(const cfg_var *vars, size_t n, void *cfg);

/* "host:port" from a *_HOST and a *_PORT variable, bracketing an IPv6
 * literal ("[::1]:50051"); cut short to cap bytes. */
void cfg_host_port(const char *host, long long port, char *out, size_t cap);

/* Reads KEY=VALUE lines from `path` into the environment without
 * overriding existing variables. Accepts "export KEY=VALUE", '#' comment
 * lines, " #" trailing comments on unquoted values, "double quotes" with
 * \n \t \r \" \\ escapes and 'single quotes' taken literally.
 * Returns 0, 1 when the file does not exist, or -1 with a message (line
 * number, never the value) in err. */
int cfg_load_env_file(const char *path, char *err, size_t errlen);

#endif
