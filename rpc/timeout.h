/*
 * timeout.h - the grpc-timeout header: 1 to 8 ASCII digits and a unit
 * (H hours, M minutes, S seconds, m milliseconds, u microseconds, n nanoseconds).
 */
#ifndef ESTORE_RPC_TIMEOUT_H
#define ESTORE_RPC_TIMEOUT_H

#include <stddef.h>
#include <stdint.h>

/* Large enough for 8 digits, the unit and a NUL. */
#define RPC_TIMEOUT_BUFLEN 10

/* Parses s[0..len). Returns 0 and the timeout in *out_ns (saturated at
 * INT64_MAX), or RPC_ERR_INVALID for an empty value, a missing or unknown
 * unit, more than 8 digits, or any non-digit. */
int rpc_timeout_parse(const char *s, size_t len, int64_t *out_ns);

/* Formats a positive timeout in the finest unit whose value fits 8 digits,
 * rounding up so the peer never sees a shorter deadline. ns <= 0 formats as
 * "1n" (already expired). Returns the string length. */
size_t rpc_timeout_format(int64_t ns, char buf[RPC_TIMEOUT_BUFLEN]);

#endif
