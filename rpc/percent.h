/*
 * percent.h - percent-encoding of grpc-message values (gRPC HTTP/2 spec).
 *
 * Bytes 0x20..0x7E except '%' pass through; everything else (including
 * UTF-8 multi-byte sequences) becomes "%XX" with upper-case hex.
 */
#ifndef ESTORE_RPC_PERCENT_H
#define ESTORE_RPC_PERCENT_H

#include <stddef.h>

/* Returns a malloc'd NUL-terminated encoding of in[0..len), and its length in
 * *out_len when out_len is non-NULL; NULL when out of memory. */
char *rpc_percent_encode(const char *in, size_t len, size_t *out_len);

/* Decodes "%XX" sequences. As the spec asks, a malformed sequence ("%G1",
 * a trailing "%") is kept literally rather than rejected. Returns a malloc'd
 * NUL-terminated string (may contain NUL bytes; see *out_len), NULL when out
 * of memory. */
char *rpc_percent_decode(const char *in, size_t len, size_t *out_len);

#endif
