/*
 * validate.h - input rules of the catalog service, as pure functions over
 * NUL-terminated strings and numbers (no I/O, no allocation), so they can
 * be tested alone and reused by the search code for the same fields.
 *
 * Every check returns NULL when the value is acceptable, or a static
 * message fragment ("must be ..."); callers prefix it with the field path
 * ("product.title: must be ...") to build the INVALID_ARGUMENT message.
 */
#ifndef ESTORE_CATALOG_VALIDATE_H
#define ESTORE_CATALOG_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAT_NAME_MAX 100              /* store and category names, code points */
#define CAT_STORE_DESCRIPTION_MAX 2000
#define CAT_TITLE_MAX 200             /* product titles */
#define CAT_PRODUCT_DESCRIPTION_MAX 5000
#define CAT_ATTRS_MAX 50              /* attributes per product */
#define CAT_ATTR_KEY_MAX 64           /* bytes: [a-z0-9_-] */
#define CAT_ATTR_VALUE_MAX 200        /* code points */
#define CAT_IMAGES_MAX 20             /* image URLs per product */
#define CAT_IMAGE_URL_MAX 2048        /* bytes */
#define CAT_PRICE_MAX 1000000000000000LL   /* 10^15 minor units */
#define CAT_STOCK_MAX 1000000000LL    /* units on hand, and |delta| */
#define CAT_LINES_MAX 100             /* lines of one reservation */
#define CAT_QUANTITY_MAX 1000000LL    /* units of one line */

/* The canonical textual UUID form, 8-4-4-4-12 hex digits (either case). */
bool cat_is_uuid(const char *s);

/* Store slug: 3..63 of a-z, 0-9 and '-', starting and ending with a letter
 * or digit, and not shaped like a UUID (GetStore takes either). */
const char *cat_check_store_slug(const char *s);

/* Category slug: 1..63 of a-z, 0-9 and '-', starting and ending with a
 * letter or digit. */
const char *cat_check_category_slug(const char *s);

/* Store and category names: 1..100 code points of valid UTF-8, no
 * control characters, not blank. */
const char *cat_check_name(const char *s);

/* Product titles: as names, 1..200 code points. */
const char *cat_check_title(const char *s);

/* Descriptions: up to `max` code points of valid UTF-8; line breaks and
 * tabs allowed, other control characters not. */
const char *cat_check_description(const char *s, size_t max);

/* Three upper-case ASCII letters (ISO 4217 alphabetic code shape). */
const char *cat_check_currency(const char *s);

/* 0 ..= CAT_PRICE_MAX minor units. */
const char *cat_check_price(int64_t amount_minor);

/* Attribute key: 1..64 of a-z, 0-9, '_' and '-' (no ':' so "key:value"
 * search filters stay unambiguous). */
const char *cat_check_attr_key(const char *s);

/* Attribute value: 1..200 code points of valid UTF-8, no control
 * characters, not blank. */
const char *cat_check_attr_value(const char *s);

/* An absolute http:// or https:// URL with a host, printable ASCII
 * without spaces, at most 2048 bytes. */
const char *cat_check_image_url(const char *s);

/* One update_mask path of UpdateProduct → its CAT_PF_* bit (store_pg.h).
 * Returns NULL, or a fragment when the path is not one of them. */
const char *cat_product_path_bit(const char *path, unsigned *bit);

#endif
