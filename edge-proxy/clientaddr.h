/*
 * clientaddr.h - who the client is when the edge sits behind proxies (an
 * Ingress, a load balancer): a list of trusted networks, and the client
 * address found by walking X-Forwarded-For from the right past every
 * trusted hop. A header from anyone else is ignored: the TCP peer is the
 * client. The answer keys the rate limits, goes to the access log and to
 * the services (metadata x-forwarded-for).
 */
#ifndef ESTORE_EDGE_CLIENTADDR_H
#define ESTORE_EDGE_CLIENTADDR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct edge_cidrs edge_cidrs;

/* "10.0.0.0/8, 192.168.1.7, ::1/128" (a bare address is one host); ""
 * or NULL = none. NULL with the reason in err on a bad entry or no
 * memory. */
edge_cidrs *edge_cidrs_parse(const char *list, char *err, size_t errlen);
void edge_cidrs_free(edge_cidrs *c);

/* True when the address (text, IPv4 or IPv6) is in one of the networks. */
bool edge_cidrs_contain(const edge_cidrs *c, const char *addr);

/*
 * The client's address: peer_addr (the TCP peer, without port or
 * brackets) unless it is trusted and `xff` (the X-Forwarded-For header,
 * may be NULL) names others; then the rightmost address of xff that is
 * not trusted (or the leftmost, when all are). Entries that are not
 * addresses end the walk at the last good one. Written to out (at least
 * 46 bytes is enough for any address).
 */
void edge_client_address(const edge_cidrs *trusted, const char *peer_addr,
			 const char *xff, char *out, size_t cap);

#endif
