/*
 * http.h - the edge proxy's HTTP server: HTTP/1.1 with keep-alive and
 * HTTP/2 over cleartext with prior knowledge (h2c), on one port, and both
 * over TLS (h2 chosen by ALPN) when a certificate is configured. It reads
 * whole requests (headers and body, within the limits below), hands each
 * to one handler, and writes the response the handler gives back, from
 * whatever thread it gives it.
 *
 * Limits and what the client gets (the connection stays usable after a
 * 413 or 431 when the protocol allows; never a hang):
 *   - request line + headers over max_header_bytes   → 431
 *   - body over max_body_bytes (by Content-Length before reading it, or
 *     while reading a chunked/HTTP/2 body)            → 413
 *   - headers not complete within header_timeout_ms  → 408, then close
 *   - body not complete within body_timeout_ms       → 408, then close
 *   - malformed HTTP/1.1 (bad request line, bad chunking, both
 *     Content-Length and Transfer-Encoding, ...)     → 400, then close
 *   - more than max_connections open                 → the new connection
 *     is closed at once (HTTP/1.1: after a 503)
 *   - a keep-alive connection idle for idle_timeout_ms is closed.
 * Responses the server makes itself carry the JSON error body of
 * httpstatus.h.
 */
#ifndef ESTORE_EDGE_HTTP_H
#define ESTORE_EDGE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct edge_http_server edge_http_server;
typedef struct edge_http_request edge_http_request;

typedef struct edge_http_config {
	const char *host;          /* "127.0.0.1", "0.0.0.0", "::" */
	int port;                  /* 0 = any free port (edge_http_server_port) */
	int io_threads;            /* event loops; default 2 */
	size_t max_header_bytes;   /* default 16 KiB */
	size_t max_body_bytes;     /* default 1 MiB */
	int header_timeout_ms;     /* default 10000 */
	int body_timeout_ms;       /* default 30000 */
	int idle_timeout_ms;       /* default 60000 */
	int max_connections;       /* default 10000 */
	int max_streams;           /* HTTP/2 concurrent streams; default 100 */
	/* TLS on the same port: a connection whose first byte is a TLS
	 * handshake record gets TLS (ALPN offers h2 and http/1.1), the
	 * others cleartext HTTP/1.1 or h2c as before, unless tls_required
	 * (then they are closed). Both files PEM; NULL = no TLS. */
	const char *tls_cert_file; /* certificate chain, leaf first */
	const char *tls_key_file;
	bool tls_required;
} edge_http_config;

/* Fills the defaults above. */
void edge_http_config_defaults(edge_http_config *cfg);

/*
 * Called once per complete request, on an I/O thread. It must not block;
 * it must eventually call edge_http_respond exactly once, from any thread
 * (typically a gRPC completion). Until then the request stays valid.
 */
typedef void (*edge_http_handler)(edge_http_request *req, void *user);

/* NULL with a message in err on a bad config or no memory. */
edge_http_server *edge_http_server_new(const edge_http_config *cfg,
				       edge_http_handler handler, void *user,
				       char *err, size_t errlen);

/* Binds and starts the I/O threads. 0, or -1 with a message in err. */
int edge_http_server_start(edge_http_server *s, char *err, size_t errlen);

/* The port bound (useful with port 0). */
int edge_http_server_port(const edge_http_server *s);

/* The I/O loops (edge_http_config.io_threads of them), which exist from
 * edge_http_server_new on and run from edge_http_server_start until the
 * shutdown: a handler's work can be put on the loop its request came in
 * on (edge_http_loop_index), e.g. a gRPC channel per loop, so a request
 * and its backend call never cross threads. */
struct rpc_loop;
size_t edge_http_server_loops(const edge_http_server *s);
struct rpc_loop *edge_http_server_loop(edge_http_server *s, size_t i);

/* Client connections open now (any thread). */
long edge_http_server_open_connections(edge_http_server *s);

/* Graceful stop: closes the listener, lets requests in flight be answered
 * for up to drain_ms (idle keep-alive connections close at once, HTTP/2
 * gets GOAWAY), then closes everything and joins the threads. */
void edge_http_server_shutdown(edge_http_server *s, int drain_ms);

/* Shuts down if needed and frees. NULL is a no-op. */
void edge_http_server_free(edge_http_server *s);

/* ---- the request (valid until edge_http_respond) ----------------------- */

/* "GET", "POST", ... (upper case as received). */
const char *edge_http_method(const edge_http_request *r);
/* The path of the request target without the query, raw (percent-encoded
 * as received), not NUL-terminated: use *len. */
const char *edge_http_path(const edge_http_request *r, size_t *len);
/* What follows '?' (raw), or NULL when there is no query. */
const char *edge_http_query(const edge_http_request *r, size_t *len);
/* The first header of that name (case-insensitive), NUL-terminated, or
 * NULL. HTTP/2 pseudo-headers are not headers; ":authority" is offered as
 * "host". */
const char *edge_http_header(const edge_http_request *r, const char *name);
/* The whole body (NULL with *len 0 when there is none). */
const uint8_t *edge_http_body(const edge_http_request *r, size_t *len);
/* "127.0.0.1:50342" / "[::1]:50342". */
const char *edge_http_peer(const edge_http_request *r);
/* 11 for HTTP/1.1 (and 1.0), 20 for HTTP/2. */
int edge_http_version(const edge_http_request *r);
/* The index of the loop the request came in on (edge_http_server_loop). */
size_t edge_http_loop_index(const edge_http_request *r);
/* True when the request came over TLS. */
bool edge_http_tls(const edge_http_request *r);
/* True once the client has gone away (connection closed, stream reset):
 * the handler may give up early; it must still respond (the response is
 * then dropped). Any thread. */
bool edge_http_cancelled(const edge_http_request *r);

typedef struct edge_http_header_kv {
	const char *name;    /* lower case: "content-type" */
	const char *value;
} edge_http_header_kv;

/*
 * Sends the response: status, headers (copied; the server adds Date,
 * Content-Length and, for HTTP/1.1, Connection as needed) and body
 * (copied). Any thread; exactly once per request; the request is freed
 * by the server afterwards. A HEAD request's response body is dropped.
 * Returns 0, or -1 when the client is gone (nothing to do).
 */
int edge_http_respond(edge_http_request *r, int status,
		      const edge_http_header_kv *headers, size_t n_headers,
		      const void *body, size_t len);

#endif
