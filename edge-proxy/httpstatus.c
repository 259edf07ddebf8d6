/*
 * httpstatus.c - gRPC status → HTTP status and JSON error body. See
 * httpstatus.h.
 */
#include "httpstatus.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rpc/log.h"

int edge_http_status(int code)
{
	switch (code) {
	case RPC_OK:
		return 200;
	case RPC_INVALID_ARGUMENT:
	case RPC_FAILED_PRECONDITION:
	case RPC_OUT_OF_RANGE:
		return 400;
	case RPC_UNAUTHENTICATED:
		return 401;
	case RPC_PERMISSION_DENIED:
		return 403;
	case RPC_NOT_FOUND:
		return 404;
	case RPC_ALREADY_EXISTS:
	case RPC_ABORTED:
		return 409;
	case RPC_RESOURCE_EXHAUSTED:
		return 429;
	case RPC_CANCELLED:
		return 499;   /* client closed request */
	case RPC_UNIMPLEMENTED:
		return 501;
	case RPC_UNAVAILABLE:
		return 503;
	case RPC_DEADLINE_EXCEEDED:
		return 504;
	default:
		return 500;
	}
}

const char *edge_http_reason(int http_status)
{
	switch (http_status) {
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "";
	}
}

/* A copy of s with every byte that is not part of valid UTF-8 replaced by
 * U+FFFD, so jansson (which refuses invalid UTF-8) always gets a string. */
static char *valid_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), o = 0;
	unsigned char *out = malloc(n * 3 + 1);

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t k = rpc_utf8_len(u + i, n - i);

		if (k == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(out + o, u + i, k);
		o += k;
		i += k;
	}
	out[o] = '\0';
	return (char *)out;
}

char *edge_error_body(int code, const char *message, size_t *len)
{
	char *clean = valid_utf8(message ? message : "");
	json_t *obj = NULL;
	char *text = NULL;

	if (clean == NULL)
		return NULL;
	obj = json_pack("{s:i, s:s, s:[]}", "code", code, "message", clean,
			"details");
	if (obj != NULL)
		text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	free(clean);
	if (text != NULL && len != NULL)
		*len = strlen(text);
	return text;
}
