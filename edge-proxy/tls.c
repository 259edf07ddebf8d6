/*
 * tls.c - the TLS server context of tls.h.
 */
#include "tls.h"

#include <stdio.h>

#include <openssl/err.h>

/* The wire form of ALPN's protocol list, in our order of preference. */
static const unsigned char SERVED[] = "\x02h2\x08http/1.1";

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	/* Ours first: a client offering both gets HTTP/2. A client offering
	 * neither goes on without ALPN rather than failing the handshake
	 * (RFC 7301 allows either), and is served by what it then sends. */
	if (SSL_select_next_proto((unsigned char **)out, outlen, SERVED,
				  sizeof(SERVED) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	return SSL_TLSEXT_ERR_OK;
}

static void openssl_reason(char *err, size_t errlen, const char *what,
			   const char *file)
{
	unsigned long e = ERR_get_error();
	char why[256] = "unknown error";

	if (e)
		ERR_error_string_n(e, why, sizeof(why));
	ERR_clear_error();
	snprintf(err, errlen, "TLS: %s %s: %s", what, file, why);
}

SSL_CTX *edge_tls_context_new(const char *cert_file, const char *key_file,
			      char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (ctx == NULL) {
		snprintf(err, errlen, "TLS: out of memory");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* Per-connection buffers go back while a connection is idle: 1,000
	 * idle keep-alive connections cost their sockets, not 34 KiB each. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
			      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
				 SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		openssl_reason(err, errlen, "cannot use the certificate", cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		openssl_reason(err, errlen, "cannot use the key", key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		openssl_reason(err, errlen, "the key does not match the certificate in",
			       cert_file);
		goto fail;
	}
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}
