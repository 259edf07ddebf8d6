/* Words of a text: the same rules for documents and queries, so whatever a
 * product says can be found by typing it. */
#include "search.h"

#include <stddef.h>

static inline bool word_byte(unsigned char c)
{
	/* Any byte of a multi-byte UTF-8 character counts as a word byte: non-ASCII
	 * letters stay inside words and a character is never cut in two. */
	return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

void es_tokenize(const char *text, es_token_fn fn, void *arg)
{
	if (!text)
		return;
	const unsigned char *p = (const unsigned char *)text;
	char buf[ES_MAX_TOKEN_BYTES];
	while (*p) {
		while (*p && !word_byte(*p))
			p++;
		if (!*p)
			break;
		size_t n = 0;
		for (; *p && word_byte(*p); p++) {
			if (n < ES_MAX_TOKEN_BYTES) {
				unsigned char c = *p;
				buf[n++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			}
		}
		if (n == ES_MAX_TOKEN_BYTES) {
			/* Cut back to the start of the character that may straddle the end:
			 * back over continuation bytes to the lead byte, then drop it too if
			 * its sequence does not fit. */
			size_t i = n;
			while (i > 0 && ((unsigned char)buf[i - 1] & 0xC0) == 0x80)
				i--;
			if (i > 0 && (unsigned char)buf[i - 1] >= 0xC0) {
				unsigned char lead = (unsigned char)buf[i - 1];
				size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
				if (n - (i - 1) < need)
					n = i - 1;
			}
		}
		if (n > 0 && !fn(buf, n, arg))
			return;
	}
}
