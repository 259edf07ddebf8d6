/*
 * clientaddr.h - who the client is behind proxies: a list of trusted
 * networks, and the client address found by walking X-Forwarded-For from
 * the right past every trusted hop. A header (or the services' metadata
 * of the same name) from anyone else is ignored: the peer is the client.
 * The edge uses it behind an Ingress (EDGE_TRUSTED_PROXIES), estore-auth
 * behind the edge (AUTH_TRUSTED_PROXIES) for its per-address throttle.
 */
#ifndef ESTORE_SVC_CLIENTADDR_H
#define ESTORE_SVC_CLIENTADDR_H

#include <stdbool.h>
#include <stddef.h>

typedef struct trusted_nets trusted_nets;

/* "10.0.0.0/8, 192.168.1.7, ::1/128" (a bare address is one host); ""
 * or NULL = none. NULL with the reason in err on a bad entry or no
 * memory. */
trusted_nets *trusted_nets_parse(const char *list, char *err, size_t errlen);
void trusted_nets_free(trusted_nets *c);

/* True when the address (text, IPv4 or IPv6) is in one of the networks. */
bool trusted_nets_contain(const trusted_nets *c, const char *addr);

/*
 * The client's address: peer_addr (the TCP peer, without port or
 * brackets) unless it is trusted and `xff` (the X-Forwarded-For header,
 * may be NULL) names others; then the rightmost address of xff that is
 * not trusted (or the leftmost, when all are). Entries that are not
 * addresses end the walk at the last good one. Written to out (at least
 * 46 bytes is enough for any address).
 */
void client_address(const trusted_nets *trusted, const char *peer_addr,
			 const char *xff, char *out, size_t cap);

#endif
