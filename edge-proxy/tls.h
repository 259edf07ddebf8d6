/*
 * tls.h - the edge's TLS server context: a certificate chain and key from
 * PEM files, TLS 1.2 and 1.3 only, and ALPN choosing "h2" over
 * "http/1.1". The HTTP server (http.c) runs one SSL per connection on it;
 * which protocol a client then speaks is still told by its first bytes
 * (the HTTP/2 preface), so ALPN only advertises what the port serves.
 */
#ifndef ESTORE_EDGE_TLS_H
#define ESTORE_EDGE_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* NULL with the reason in err: a file that cannot be read, a key that
 * does not match the certificate, no memory. */
SSL_CTX *edge_tls_context_new(const char *cert_file, const char *key_file,
			      char *err, size_t errlen);

#endif
