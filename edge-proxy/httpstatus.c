/*
 * httpstatus.c - gRPC status → HTTP status and JSON error body. See
 * httpstatus.h.
 */
#include "httpstatus.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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
	size_t n = strlen(s), o = 0;
	unsigned char *out = malloc(n * 3 + 1);

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t need = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 :
			      c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 99;
		unsigned cp = need == 0 ? c : need == 1 ? c & 0x1f : need == 2 ? c & 0x0f : c & 0x07;
		bool ok = need != 99 && n - i > need;

		for (size_t k = 1; ok && k <= need; k++) {
			if (((unsigned char)s[i + k] & 0xc0) != 0x80)
				ok = false;
			else
				cp = cp << 6 | ((unsigned char)s[i + k] & 0x3f);
		}
		if (ok && ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
			   (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff))
			ok = false;
		if (!ok) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(out + o, s + i, need + 1);
		o += need + 1;
		i += need + 1;
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
