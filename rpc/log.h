/*
 * log.h - the library never prints; it reports through this hook.
 *
 * Programs install a sink once at start. rpc_log_json_sink writes one JSON
 * object a line to stdout, which is what every estore program uses.
 */
#ifndef ESTORE_RPC_LOG_H
#define ESTORE_RPC_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum rpc_log_level {
	RPC_LOG_DEBUG = 0,
	RPC_LOG_INFO = 1,
	RPC_LOG_WARN = 2,
	RPC_LOG_ERROR = 3,
} rpc_log_level;

/* A structured field of a log line: a string, or a number when str is
 * NULL. */
typedef struct rpc_log_field {
	const char *key;
	const char *str;
	long long num;
} rpc_log_field;

/* `fields` (n_fields of them, maybe 0) come with lines logged through
 * rpc_log_fields; `request_id` is the calling thread's (see
 * rpc_log_set_request_id) or NULL. */
typedef void (*rpc_log_sink)(void *user, rpc_log_level level,
			     const char *component, const char *request_id,
			     const rpc_log_field *fields, size_t n_fields,
			     const char *message);

/* Installs the sink (NULL disables logging) and the minimum level.
 * Call before starting threads. */
void rpc_log_set_sink(rpc_log_sink sink, void *user, rpc_log_level min_level);

/* True when a message at `level` would be emitted: check before costly
 * formatting. */
bool rpc_log_enabled(rpc_log_level level);

/* Formats and emits a message; cheap no-op when the level is filtered. */
void rpc_log(rpc_log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like rpc_log, with structured fields (an access-log line). */
void rpc_log_fields(rpc_log_level level, const char *component,
		    const rpc_log_field *fields, size_t n_fields,
		    const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* The request this thread works for (NULL: none): every line logged from
 * the thread carries it until it is cleared. The string is borrowed and
 * must outlive its use; the RPC server sets it from a call's
 * x-request-id around the handler. */
void rpc_log_set_request_id(const char *request_id);

/* Sink writing {"ts":"...","level":"info","service":"...","component":
 * "...","request_id":"...",<fields>,"msg":"..."} lines to stdout; `user`
 * is the program name added as "service". */
void rpc_log_json_sink(void *user, rpc_log_level level, const char *component,
		       const char *request_id, const rpc_log_field *fields,
		       size_t n_fields, const char *message);

/* Parses "debug", "info", "warn", "error"; returns 0 or RPC_ERR_INVALID. */
/* Length of the well-formed UTF-8 sequence at s (n >= 1 bytes
 * available), 0 when the bytes are not valid UTF-8 (overlong, surrogate,
 * beyond U+10FFFF, truncated). The log sink replaces what is not with
 * U+FFFD; the wire check and the edge's error bodies use it too. */
size_t rpc_utf8_len(const unsigned char *s, size_t n);

int rpc_log_level_parse(const char *s, rpc_log_level *out);

#endif
