/*
 * search_bench - the catalog's search engine on a generated catalog.
 *
 *   search_bench [--products N] [--duration S] [--threads T] [--seed X]
 *                [--only K] [--facet-cache N] [--writes W]
 *
 * Generates N products (default 1,000,000) deterministically from the seed:
 * titles from brands, adjectives, colours, product nouns and model numbers,
 * descriptions, attributes, a category tree, stores, prices, ratings, sales
 * and ages. Builds the index (upserts, then es_optimize) and prints the
 * build time and the index's counted memory. Then, per query type, T
 * threads (default 16) query as fast as they can for S seconds (default 5)
 * and then one thread alone for S/2 seconds; prints requests/s and p50/p99
 * latency. Query types (K, for --only): 0 one common word, 1 two words,
 * 2 a misspelt word, 3 a filtered query sorted by price, 4 a common word
 * with every facet, 5 Suggest, 6 all of them mixed. Meanwhile a writer
 * re-upserts W random products a second (default 20; each write empties the
 * facet cache). --facet-cache sets es_config.facet_cache_entries (0: off).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "search.h"

static const char *brands[] = {
        "Sony",      "Samsung",  "Apple",  "Bose",      "Philips",   "Logitech", "Lenovo",
        "Dell",      "Asus",     "Acer",   "Canon",     "Nikon",     "JBL",      "Sennheiser",
        "Anker",     "Xiaomi",   "Huawei", "LG",        "Panasonic", "Bosch",    "Siemens",
        "Miele",     "Dyson",    "Ikea",   "Tefal",     "Nike",      "Adidas",   "Puma",
        "Reebok",    "Levis",    "Zara",   "Uniqlo",    "Lego",      "Hasbro",   "Mattel",
        "Garmin",    "Fitbit",   "Casio",  "Seiko",     "Fossil",    "Braun",    "Oral-B",
        "Nivea",     "Loreal",   "Makita", "Dewalt",    "Stanley",   "Karcher",  "Weber",
        "Nespresso", "DeLonghi", "Krups",  "Smeg",      "Tommee",    "Chicco",   "Pampers",
        "Coleman",   "Osprey",   "Thule",  "Victorinox"};
static const char *adjectives[] = {"wireless",
                                   "portable",
                                   "compact",
                                   "premium",
                                   "professional",
                                   "classic",
                                   "modern",
                                   "ergonomic",
                                   "waterproof",
                                   "lightweight",
                                   "heavy-duty",
                                   "rechargeable",
                                   "smart",
                                   "digital",
                                   "vintage",
                                   "slim",
                                   "ultra",
                                   "mini",
                                   "large",
                                   "soft",
                                   "warm",
                                   "breathable",
                                   "organic",
                                   "stainless",
                                   "ceramic",
                                   "wooden",
                                   "foldable",
                                   "adjustable",
                                   "noise-cancelling",
                                   "bluetooth",
                                   "cordless",
                                   "electric",
                                   "manual",
                                   "automatic",
                                   "durable",
                                   "elegant",
                                   "casual",
                                   "sport",
                                   "outdoor",
                                   "indoor",
                                   "kids",
                                   "travel",
                                   "family",
                                   "eco",
                                   "fast",
                                   "quiet",
                                   "powerful",
                                   "handmade",
                                   "luxury",
                                   "basic",
                                   "deluxe",
                                   "retro",
                                   "gaming",
                                   "studio",
                                   "hybrid",
                                   "thermal",
                                   "magnetic",
                                   "flexible",
                                   "reusable",
                                   "anti-slip"};
static const char *colors[] = {"black",  "white", "silver", "grey",   "blue",     "red",   "green",
                               "yellow", "pink",  "purple", "orange", "brown",    "beige", "gold",
                               "navy",   "olive", "teal",   "ivory",  "charcoal", "rose"};
static const char *materials[] = {"cotton",   "polyester", "leather", "steel",  "aluminium",
                                  "plastic",  "glass",     "oak",     "bamboo", "wool",
                                  "silicone", "ceramic",   "linen",   "nylon",  "rubber"};
static const char *sizes[] = {"xs",  "s",        "m",     "l",      "xl",
                              "xxl", "one size", "small", "medium", "large"};
/* Ten departments, each with product nouns spread over its leaf categories. */
static const char *departments[10] = {"electronics", "computers", "home",   "kitchen", "fashion",
                                      "sports",      "toys",      "beauty", "garden",  "baby"};
static const char *nouns[10][16] = {
        {"headphones", "earbuds", "speaker", "soundbar", "television", "camera", "lens",
         "microphone", "charger", "cable", "powerbank", "smartwatch", "tripod", "drone",
         "projector", "radio"},
        {"laptop", "keyboard", "mouse", "monitor", "webcam", "router", "tablet", "printer",
         "scanner", "harddrive", "ssd", "dock", "headset", "desk", "chair", "stand"},
        {"lamp", "sofa", "cushion", "blanket", "curtain", "rug", "mirror", "shelf", "vase", "clock",
         "candle", "frame", "bed", "pillow", "wardrobe", "table"},
        {"kettle", "toaster", "blender", "mixer", "pan", "pot", "knife", "mug", "plate", "bowl",
         "grinder", "juicer", "oven", "fryer", "cooker", "espresso"},
        {"shirt", "jeans", "jacket", "dress", "sweater", "hoodie", "sneakers", "boots", "scarf",
         "hat", "socks", "belt", "coat", "skirt", "shorts", "gloves"},
        {"bicycle", "helmet", "racket", "ball", "tent", "backpack", "yoga", "dumbbell", "treadmill",
         "skates", "goggles", "bottle", "sleepingbag", "kayak", "rope", "mat"},
        {"puzzle", "doll", "robot", "blocks", "car", "train", "boardgame", "plush", "kite",
         "scooter", "figure", "playset", "crayons", "slime", "marbles", "drum"},
        {"shampoo", "conditioner", "perfume", "lotion", "serum", "razor", "toothbrush", "brush",
         "dryer", "straightener", "lipstick", "mascara", "cream", "soap", "deodorant", "mask"},
        {"grill", "mower", "hose", "shovel", "planter", "seeds", "fertilizer", "trimmer", "bench",
         "umbrella", "hammock", "lantern", "sprinkler", "wheelbarrow", "gloves", "shed"},
        {"stroller", "crib", "diapers", "bottle", "monitor", "carrier", "highchair", "onesie",
         "pacifier", "wipes", "bib", "rattle", "swaddle", "playmat", "carseat", "bathtub"}};
static const char *phrases[] = {"designed for everyday use",
                                "built to last",
                                "easy to clean",
                                "with a two year warranty",
                                "perfect as a gift",
                                "made from recycled materials",
                                "fits most",
                                "includes a carry case",
                                "for home and office",
                                "tested by experts",
                                "with fast shipping",
                                "great value",
                                "energy efficient",
                                "safe for children",
                                "award winning design",
                                "limited edition"};

#define NB (sizeof brands / sizeof brands[0])
#define NA (sizeof adjectives / sizeof adjectives[0])
#define NC (sizeof colors / sizeof colors[0])
#define NM (sizeof materials / sizeof materials[0])
#define NS (sizeof sizes / sizeof sizes[0])
#define NP (sizeof phrases / sizeof phrases[0])

static uint64_t mix(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

typedef struct {
	uint64_t s;
} rng_t;

static uint32_t rnd(rng_t *r)
{
	r->s = mix(r->s);
	return (uint32_t)r->s;
}

static uint32_t below(rng_t *r, uint32_t n)
{
	return rnd(r) % n;
}

/* Skewed towards the start of a list: popular brands, common colours. */
static uint32_t skewed(rng_t *r, uint32_t n)
{
	double u = (rnd(r) + 0.5) / 4294967296.0;
	return (uint32_t)(n * u * u);
}

#define NOW 1767225600 /* 2026-01-01 */

static void make_product(uint64_t seed, uint64_t i, es_doc *d, char *bufs, const char **cats,
                         es_attr *attrs)
{
	rng_t r = {mix(seed ^ (i * 0x9E3779B97F4A7C15ull))};
	char *id = bufs, *title = bufs + 64, *desc = bufs + 320, *store = bufs + 1400,
	     *c1 = bufs + 1440, *c2 = bufs + 1480;
	/* A UUID-shaped id, unique by construction (i in the last group). */
	snprintf(id, 64, "%08x-%04x-4%03x-a%03x-%012" PRIx64, rnd(&r), below(&r, 65536),
	         below(&r, 4096), below(&r, 4096), i);
	uint32_t dep = skewed(&r, 10), leaf = below(&r, 6), sub = below(&r, 5);
	const char *noun = nouns[dep][below(&r, 16)];
	const char *brand = brands[skewed(&r, NB)];
	const char *adj = adjectives[below(&r, NA)];
	const char *color = colors[skewed(&r, NC)];
	int style = (int)below(&r, 4);
	char model[16];
	snprintf(model, sizeof model, "%c%u", 'A' + below(&r, 26), below(&r, 2000));
	switch (style) {
	case 0: snprintf(title, 256, "%s %s %s %s %s", brand, adj, color, noun, model); break;
	case 1: snprintf(title, 256, "%s %s %s, %s", brand, noun, model, color); break;
	case 2:
		snprintf(title, 256, "%s %s %s %s by %s", adj, adjectives[below(&r, NA)], noun,
		         model, brand);
		break;
	default: snprintf(title, 256, "%s %s %s (%s)", brand, color, noun, sizes[below(&r, NS)]);
	}
	int n = 0;
	n += snprintf(desc + n, 1000 - n, "This %s %s from %s is %s.", adj, noun, brand,
	              phrases[below(&r, NP)]);
	int extra = 1 + (int)below(&r, 3);
	for (int k = 0; k < extra; k++)
		n += snprintf(desc + n, 1000 - n, " %s %s %s, %s.", adjectives[below(&r, NA)],
		              materials[below(&r, NM)], nouns[dep][below(&r, 16)],
		              phrases[below(&r, NP)]);
	snprintf(store, 40, "store-%04u", skewed(&r, 2000));
	snprintf(c1, 40, "%s-%u", departments[dep], leaf);
	snprintf(c2, 40, "%s-%u-%u", departments[dep], leaf, sub);
	cats[0] = departments[dep];
	cats[1] = c1;
	cats[2] = c2;
	int na = 0;
	attrs[na++] = (es_attr){"brand", brand};
	attrs[na++] = (es_attr){"color", color};
	if (below(&r, 2))
		attrs[na++] = (es_attr){"material", materials[below(&r, NM)]};
	if (dep == 4 || below(&r, 4) == 0)
		attrs[na++] = (es_attr){"size", sizes[below(&r, NS)]};
	static const int64_t base[10] = {9900, 29900, 4900, 3900, 2900,
	                                 4900, 1900,  1500, 3500, 4500};
	double f = exp(((double)rnd(&r) / 4294967296.0 - 0.5) * 3.0);
	memset(d, 0, sizeof *d);
	d->product_id = id;
	d->store_id = store;
	d->category_path = cats;
	d->category_count = 3;
	d->title = title;
	d->description = desc;
	d->attrs = attrs;
	d->attr_count = (size_t)na;
	d->price = (int64_t)(base[dep] * f) / 100 * 100 + 99;
	d->currency = "EUR";
	d->stock = below(&r, 5) == 0 ? 0 : below(&r, 200);
	d->rating_count = below(&r, 3) == 0 ? 0 : skewed(&r, 5000);
	d->rating = d->rating_count ? 1.0 + below(&r, 41) / 10.0 : 0.0;
	d->sales = skewed(&r, 20000);
	d->created = NOW - (int64_t)below(&r, 3 * 365) * 86400 - below(&r, 86400);
}

static double now_s(void);

/* Re-upserts random products at a steady rate while queries run, as the
 * catalog service does on every change: each write invalidates the facet
 * cache and adds a tail document. */
typedef struct {
	es_index *ix;
	uint64_t seed;
	long n;
	double per_sec;
} writer_arg;

static atomic_bool stop_writer;

static void *writer(void *arg)
{
	writer_arg *w = arg;
	char bufs[1600];
	const char *cats[3];
	es_attr attrs[4];
	es_doc d;
	uint64_t k = 0;
	double next = now_s();
	while (!atomic_load(&stop_writer)) {
		uint64_t i = mix(w->seed * 31 + k++) % (uint64_t)w->n;
		make_product(w->seed, i, &d, bufs, cats, attrs);
		d.stock = (int64_t)(k % 50); /* a restock */
		if (es_upsert(w->ix, &d) != ES_OK)
			break;
		next += 1.0 / w->per_sec;
		double wait = next - now_s();
		if (wait > 0) {
			struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- query mixes ---------------------------------------------------- */

enum { Q_COMMON, Q_TWO, Q_TYPO, Q_FILTER, Q_FACETS, Q_SUGGEST, Q_MIX, NQ };
static const char *qnames[NQ] = {
        "one common word",      "two words", "misspelt word", "filtered, by price",
        "common word + facets", "suggest",   "all mixed"};

static const char *common_words[] = {"black", "wireless", "premium", "portable",
                                     "white", "sony",     "classic", "steel"};
static const char *two_words[] = {"sony headphones",    "wireless mouse", "black sneakers",
                                  "samsung television", "ceramic mug",    "portable speaker",
                                  "leather boots",      "bosch oven"};
static const char *typo_words[] = {"hedphones", "keybaord", "labtop",  "sneekers",
                                   "televison", "blendr",   "wireles", "protable"};
static const char *suggest_prefixes[] = {"he", "sam", "wire", "kett", "sn", "lap", "port", "b"};
static const int64_t price_bounds[] = {0, 1000, 2500, 5000, 10000, 25000, 50000};

typedef struct {
	es_index *ix;
	int type;
	double until;
	uint64_t *lat; /* ns */
	size_t nlat, cap;
	uint64_t seed;
	int err;
} worker;

static int run_one(es_index *ix, int type, rng_t *r)
{
	if (type == Q_MIX)
		type = (int)below(r, Q_MIX);
	int k = (int)below(r, 8);
	if (type == Q_SUGGEST) {
		es_suggest_result s;
		int rc = es_suggest(ix, suggest_prefixes[k], 10, &s);
		es_suggest_result_free(&s);
		return rc;
	}
	es_query q = {.page_size = 20};
	const char *cats[1];
	char cat[40];
	switch (type) {
	case Q_COMMON: q.text = common_words[k]; break;
	case Q_TWO: q.text = two_words[k]; break;
	case Q_TYPO: q.text = typo_words[k]; break;
	case Q_FILTER:
		q.text = two_words[k] + (k < 4 ? strcspn(two_words[k], " ") + 1 : 0);
		snprintf(cat, sizeof cat, "%s", departments[k]);
		cats[0] = cat;
		q.category_ids = cats;
		q.category_count = 1;
		q.has_min_price = q.has_max_price = true;
		q.min_price = 1000;
		q.max_price = 20000;
		q.in_stock_only = true;
		q.sort = ES_SORT_PRICE_ASC;
		break;
	case Q_FACETS:
		q.text = common_words[k];
		q.facets = true;
		q.price_bounds = price_bounds;
		q.price_bound_count = sizeof price_bounds / sizeof price_bounds[0];
		break;
	}
	es_result res;
	int rc = es_search(ix, &q, &res);
	es_result_free(&res);
	return rc;
}

static void *work(void *arg)
{
	worker *w = arg;
	rng_t r = {w->seed};
	while (now_s() < w->until) {
		double t0 = now_s();
		int rc = run_one(w->ix, w->type, &r);
		double t1 = now_s();
		if (rc != ES_OK) {
			w->err = rc;
			break;
		}
		if (w->nlat == w->cap) {
			size_t nc = w->cap ? w->cap * 2 : 4096;
			uint64_t *nl = realloc(w->lat, nc * sizeof *nl);
			if (!nl) {
				w->err = ES_ENOMEM;
				break;
			}
			w->lat = nl;
			w->cap = nc;
		}
		w->lat[w->nlat++] = (uint64_t)((t1 - t0) * 1e9);
	}
	return NULL;
}

static int u64cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static int measure(es_index *ix, int type, int threads, double seconds)
{
	worker *w = calloc((size_t)threads, sizeof *w);
	pthread_t *t = calloc((size_t)threads, sizeof *t);
	if (!w || !t)
		return -1;
	double start = now_s();
	for (int i = 0; i < threads; i++) {
		w[i] = (worker){.ix = ix,
		                .type = type,
		                .until = start + seconds,
		                .seed = mix((uint64_t)i * 7919 + (uint64_t)type)};
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	size_t total = 0;
	int err = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		total += w[i].nlat;
		if (w[i].err)
			err = w[i].err;
	}
	double elapsed = now_s() - start;
	uint64_t *all = malloc((total ? total : 1) * sizeof *all);
	size_t k = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all);
		k += w[i].nlat;
		free(w[i].lat);
	}
	qsort(all, total, sizeof *all, u64cmp);
	double p50 = total ? all[total / 2] / 1e6 : 0,
	       p99 = total ? all[total * 99 / 100] / 1e6 : 0, mx = total ? all[total - 1] / 1e6 : 0;
	printf("  %-22s %3d thr %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   max %7.2f ms%s\n",
	       qnames[type], threads, total / elapsed, p50, p99, mx, err ? "   ERRORS" : "");
	fflush(stdout);
	free(all);
	free(w);
	free(t);
	return err;
}

static long rss_mib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &res) != 2)
			res = 0;
		fclose(f);
	}
	return res * 4096 / (1024 * 1024);
}

int main(int argc, char **argv)
{
	long n = 1000000;
	double duration = 5;
	int threads = 16;
	uint64_t seed = 1;
	int only = -1;
	long facet_cache = -1;
	double writes = 20;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--products") == 0 && i + 1 < argc)
			n = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc)
			duration = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--facet-cache") == 0 && i + 1 < argc)
			facet_cache = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--writes") == 0 && i + 1 < argc)
			writes = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = atoi(argv[++i]);
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: search_bench [--products N] [--duration S] "
			                "[--threads T] [--seed X] [--only K]\n");
			return 2;
		}
	}
	if (n < 1 || n > 50000000 || duration <= 0 || threads < 1 || threads > 256) {
		fprintf(stderr, "search_bench: out of range\n");
		return 2;
	}
	es_config cfg;
	es_config_default(&cfg);
	cfg.reference_time = NOW;
	if (facet_cache >= 0)
		cfg.facet_cache_entries = (uint32_t)facet_cache;
	es_index *ix = es_create(&cfg);
	if (!ix)
		return 1;
	printf("search_bench: %ld products, seed %" PRIu64 ", %d threads, %.1f s per run\n", n,
	       seed, threads, duration);
	long rss0 = rss_mib();
	double t0 = now_s();
	char bufs[1600];
	const char *cats[3];
	es_attr attrs[4];
	es_doc d;
	for (long i = 0; i < n; i++) {
		make_product(seed, (uint64_t)i, &d, bufs, cats, attrs);
		int rc = es_upsert(ix, &d);
		if (rc != ES_OK) {
			fprintf(stderr, "upsert %ld: %s\n", i, es_strerror(rc));
			return 1;
		}
	}
	double t1 = now_s();
	if (es_optimize(ix) != ES_OK)
		return 1;
	double t2 = now_s();
	es_stats st;
	es_get_stats(ix, &st);
	printf("build: %.2f s (upserts %.2f s incl. generating, optimize %.2f s)\n", t2 - t0,
	       t1 - t0, t2 - t1);
	printf("index: %" PRIu64 " products, %" PRIu64 " words, %.1f MiB counted "
	       "(%.0f bytes/product); process RSS grew %ld MiB\n",
	       st.docs, st.terms, st.memory_bytes / 1048576.0,
	       (double)st.memory_bytes / (double)(st.docs ? st.docs : 1), rss_mib() - rss0);
	/* How big the "common" answers are. */
	for (size_t k = 0; k < 3; k++) {
		es_query q = {.text = common_words[k], .page_size = 20};
		es_result r;
		if (es_search(ix, &q, &r) == ES_OK)
			printf("  '%s' matches %" PRIu64 " (%.1f%%)\n", common_words[k], r.total,
			       100.0 * r.total / st.docs);
		es_result_free(&r);
	}
	{
		es_query q = {.text = "hedphones", .page_size = 3};
		es_result r;
		if (es_search(ix, &q, &r) == ES_OK && r.correction_count)
			printf("  'hedphones' read as '%s', %" PRIu64 " matches\n",
			       r.corrections[1], r.total);
		es_result_free(&r);
	}
	int err = 0;
	writer_arg wa = {ix, seed, n, writes};
	pthread_t wt;
	if (writes > 0)
		pthread_create(&wt, NULL, writer, &wa);
	printf("%d threads (and %.0f product updates/s):\n", threads, writes);
	for (int t = 0; t < NQ; t++)
		if (only < 0 || only == t)
			err |= measure(ix, t, threads, duration);
	printf("1 thread:\n");
	for (int t = 0; t < NQ; t++)
		if (only < 0 || only == t)
			err |= measure(ix, t, 1, duration / 2);
	atomic_store(&stop_writer, true);
	if (writes > 0)
		pthread_join(wt, NULL);
	es_stats st2;
	es_get_stats(ix, &st2);
	printf("after: %" PRIu64 " products, %" PRIu64 " updated since es_optimize\n", st2.docs,
	       st2.tail_docs);
	es_destroy(ix);
	return err ? 1 : 0;
}
