/*
 * validate.c - input rules of the catalog service (see validate.h).
 */
#include "validate.h"

#include <string.h>

#include "rpc/log.h"
#include "store_pg.h"

bool cat_is_uuid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	for (size_t i = 0; i < sizeof(shape) - 1; i++) {
		char c = s[i];

		if (shape[i] == '-') {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return s[sizeof(shape) - 1] == '\0';
}

static bool slug_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

static const char *check_slug(const char *s, size_t min, const char *msg)
{
	size_t n = strlen(s);

	if (n < min || n > 63)
		return msg;
	for (size_t i = 0; i < n; i++)
		if (!slug_char(s[i]))
			return msg;
	if (s[0] == '-' || s[n - 1] == '-')
		return msg;
	return NULL;
}

const char *cat_check_store_slug(const char *s)
{
	const char *why = check_slug(s, 3,
				     "must be 3 to 63 lower-case letters, digits "
				     "or '-', starting and ending with a letter or "
				     "digit");

	if (why)
		return why;
	if (cat_is_uuid(s))
		return "must not be shaped like a UUID";
	return NULL;
}

const char *cat_check_category_slug(const char *s)
{
	return check_slug(s, 1,
			  "must be 1 to 63 lower-case letters, digits or '-', "
			  "starting and ending with a letter or digit");
}

/*
 * Walks s as UTF-8; counts code points into *n. Returns false on invalid
 * UTF-8, or on a control character (C0, DEL, C1) other than those in
 * `allowed`. *blank tells whether every code point was a space.
 */
static bool scan_text(const char *s, const char *allowed, size_t *n,
		      bool *blank)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s);

	*n = 0;
	*blank = true;
	for (size_t i = 0; i < len;) {
		size_t k = rpc_utf8_len(u + i, len - i);

		if (k == 0)
			return false;
		if (k == 1 && (u[i] < 0x20 || u[i] == 0x7F) &&
		    !(u[i] && strchr(allowed, u[i])))
			return false;
		/* C1 controls U+0080..U+009F are C2 80..C2 9F. */
		if (k == 2 && u[i] == 0xC2 && u[i + 1] <= 0x9F)
			return false;
		if (!(k == 1 && (u[i] == ' ' || strchr(allowed, u[i]))))
			*blank = false;
		i += k;
		(*n)++;
	}
	return true;
}

static const char *check_line(const char *s, size_t max, const char *msg)
{
	size_t n;
	bool blank;

	if (!scan_text(s, "", &n, &blank))
		return "must be valid UTF-8 without control characters";
	if (n == 0 || n > max)
		return msg;
	if (blank)
		return "must not be blank";
	return NULL;
}

const char *cat_check_name(const char *s)
{
	return check_line(s, CAT_NAME_MAX, "must be 1 to 100 characters");
}

const char *cat_check_title(const char *s)
{
	return check_line(s, CAT_TITLE_MAX, "must be 1 to 200 characters");
}

const char *cat_check_attr_value(const char *s)
{
	return check_line(s, CAT_ATTR_VALUE_MAX, "must be 1 to 200 characters");
}

const char *cat_check_description(const char *s, size_t max)
{
	size_t n;
	bool blank;

	if (!scan_text(s, "\n\r\t", &n, &blank))
		return "must be valid UTF-8 without control characters "
		       "(line breaks and tabs allowed)";
	if (n > max)
		return max == CAT_STORE_DESCRIPTION_MAX
			       ? "must be at most 2000 characters"
			       : "must be at most 5000 characters";
	return NULL;
}

const char *cat_check_currency(const char *s)
{
	if (strlen(s) != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' ||
	    s[1] > 'Z' || s[2] < 'A' || s[2] > 'Z')
		return "must be an ISO 4217 code of three upper-case letters, "
		       "e.g. EUR";
	return NULL;
}

const char *cat_check_price(int64_t amount_minor)
{
	if (amount_minor < 0)
		return "must not be negative";
	if (amount_minor > CAT_PRICE_MAX)
		return "must be at most 10^15 minor units";
	return NULL;
}

const char *cat_check_attr_key(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CAT_ATTR_KEY_MAX)
		goto bad;
	for (size_t i = 0; i < n; i++)
		if (!slug_char(s[i]) && s[i] != '_')
			goto bad;
	return NULL;
bad:
	return "keys must be 1 to 64 lower-case letters, digits, '_' or '-'";
}

const char *cat_check_image_url(const char *s)
{
	size_t n = strlen(s), skip;

	if (n > CAT_IMAGE_URL_MAX)
		return "must be at most 2048 characters";
	if (strncmp(s, "https://", 8) == 0)
		skip = 8;
	else if (strncmp(s, "http://", 7) == 0)
		skip = 7;
	else
		return "must be an http:// or https:// URL";
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return "must be printable ASCII without spaces "
			       "(percent-encode the rest)";
	/* A host must follow the scheme. */
	if (s[skip] == '\0' || s[skip] == '/' || s[skip] == '?' ||
	    s[skip] == '#' || s[skip] == ':' || s[skip] == '@')
		return "must name a host";
	return NULL;
}

const char *cat_product_path_bit(const char *path, unsigned *bit)
{
	static const struct {
		const char *path;
		unsigned bit;
	} paths[] = {
		{ "title", CAT_PF_TITLE },
		{ "description", CAT_PF_DESCRIPTION },
		{ "category_id", CAT_PF_CATEGORY },
		{ "price", CAT_PF_PRICE },
		{ "attributes", CAT_PF_ATTRIBUTES },
		{ "image_urls", CAT_PF_IMAGES },
		{ "status", CAT_PF_STATUS },
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (strcmp(path, paths[i].path) == 0) {
			*bit = paths[i].bit;
			return NULL;
		}
	return "unknown path";
}
