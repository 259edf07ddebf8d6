/*
 * gen.c - the seeded catalog generator (see gen.h).
 */
#include "gen.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- randomness ------------------------------------------------------------ */

/* splitmix64: a fine mixer for counter-based streams (each row seeds its
 * own generator from (seed, kind, index), so rows are independent). */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

typedef struct rng {
	uint64_t s;
} rng;

static rng rng_for(uint64_t seed, enum seed_kind kind, uint64_t index)
{
	rng r = { mix64(mix64(seed) ^ mix64(((uint64_t)kind << 56) ^ index)) };

	return r;
}

static uint64_t next(rng *r)
{
	r->s += 0x9e3779b97f4a7c15ULL;
	return mix64(r->s);
}

/* Uniform in [0, 1). */
static double unit(rng *r)
{
	return (double)(next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [0, n). */
static size_t below(rng *r, size_t n)
{
	return (size_t)(unit(r) * (double)n);
}

/* In [0, n), the first ones far likelier: about Zipf-like, so the head of
 * each word list is common and its tail rare. */
static size_t skewed(rng *r, size_t n)
{
	double u = unit(r);

	return (size_t)(u * u * u * (double)n);
}

static bool chance(rng *r, double p)
{
	return unit(r) < p;
}

#define PICK(r, list) ((list)[below((r), N(list))])
#define PICK_SKEWED(r, list) ((list)[skewed((r), N(list))])

void seed_uuid(uint64_t seed, enum seed_kind kind, uint64_t index,
	       char out[SEED_UUID_LEN + 1])
{
	rng r = rng_for(seed, kind, index ^ 0x5eed1d5ULL);
	uint64_t hi = next(&r), lo = next(&r);

	/* Version 4, variant 10: the shape gen_random_uuid() gives. */
	hi = (hi & ~0xf000ULL) | 0x4000ULL;
	lo = (lo & ~(3ULL << 62)) | (2ULL << 62);
	snprintf(out, SEED_UUID_LEN + 1, "%08x-%04x-%04x-%04x-%012llx",
		 (unsigned)(hi >> 32), (unsigned)((hi >> 16) & 0xffff),
		 (unsigned)(hi & 0xffff), (unsigned)(lo >> 48),
		 (unsigned long long)(lo & 0xffffffffffffULL));
}

/* ---- vocabulary ------------------------------------------------------------ */

/* A department: its sub-categories' leaves carry the nouns of titles; the
 * word lists give titles, attributes and descriptions their variety. */
typedef struct leaf_def {
	const char *slug, *name, *noun;
} leaf_def;

typedef struct sub_def {
	const char *slug, *name;
	leaf_def leaves[6];
} sub_def;

typedef struct dept_def {
	const char *slug, *name;
	sub_def subs[5];
	const char *brands[14];
	const char *adjectives[14];
	const char *materials[10];
	/* One more attribute, beside brand, colour and material. */
	const char *extra_key;
	const char *extra_values[10];
	const char *features[12];
	const char *uses[8];
	int64_t price_lo, price_hi; /* minor units */
} dept_def;

static const dept_def departments[] = {
	{ "electronics", "Electronics",
	  { { "audio", "Audio",
	      { { "headphones", "Headphones", "Headphones" },
		{ "earbuds", "Earbuds", "Earbuds" },
		{ "speakers", "Speakers", "Bluetooth Speaker" },
		{ "soundbars", "Soundbars", "Soundbar" },
		{ "turntables", "Turntables", "Turntable" } } },
	    { "computers", "Computers",
	      { { "laptops", "Laptops", "Laptop" },
		{ "keyboards", "Keyboards", "Keyboard" },
		{ "mice", "Mice", "Mouse" },
		{ "monitors", "Monitors", "Monitor" },
		{ "webcams", "Webcams", "Webcam" } } },
	    { "phones", "Phones & Accessories",
	      { { "smartphones", "Smartphones", "Smartphone" },
		{ "chargers", "Chargers", "Charger" },
		{ "phone-cases", "Phone Cases", "Phone Case" },
		{ "cables", "Cables", "Cable" },
		{ "power-banks", "Power Banks", "Power Bank" } } },
	    { "cameras", "Cameras",
	      { { "digital-cameras", "Digital Cameras", "Camera" },
		{ "lenses", "Lenses", "Lens" },
		{ "tripods", "Tripods", "Tripod" },
		{ "memory-cards", "Memory Cards", "Memory Card" } } } },
	  { "Auralis", "Voltra", "Nordtek", "Sonique", "Pixelon", "Zentro",
	    "Kyroku", "Lumetric", "Brightwave", "Orbix", "Hexacore", "Tessaro",
	    "Quantix", "Velmora" },
	  { "Wireless", "Portable", "Compact", "Noise-Cancelling", "Ergonomic",
	    "Premium", "Waterproof", "Fast-Charging", "Ultra-Slim", "Smart",
	    "Mechanical", "Rugged", "Studio", "Foldable" },
	  { "aluminium", "plastic", "silicone", "glass", "carbon fibre",
	    "stainless steel", "leather", "fabric", "rubber", "magnesium" },
	  "connectivity",
	  { "bluetooth", "usb-c", "wired", "wi-fi", "lightning", "nfc",
	    "hdmi", "displayport", "infrared", "zigbee" },
	  { "with active noise cancellation", "with a battery that lasts up to 30 hours",
	    "with a crisp high-resolution display", "with low-latency pairing",
	    "with a braided reinforced cable", "with a detachable microphone",
	    "with backlit keys", "with optical image stabilisation",
	    "with quick charge support", "with a splash-proof housing",
	    "with an adjustable headband", "with a carrying pouch" },
	  { "commuting", "gaming", "the home office", "travel", "workouts",
	    "video calls", "streaming", "photography" },
	  999, 249900 },
	{ "home-kitchen", "Home & Kitchen",
	  { { "cookware", "Cookware",
	      { { "frying-pans", "Frying Pans", "Frying Pan" },
		{ "saucepans", "Saucepans", "Saucepan" },
		{ "woks", "Woks", "Wok" },
		{ "dutch-ovens", "Dutch Ovens", "Dutch Oven" },
		{ "knife-sets", "Knife Sets", "Knife Set" } } },
	    { "appliances", "Small Appliances",
	      { { "blenders", "Blenders", "Blender" },
		{ "toasters", "Toasters", "Toaster" },
		{ "kettles", "Kettles", "Kettle" },
		{ "coffee-makers", "Coffee Makers", "Coffee Maker" },
		{ "air-fryers", "Air Fryers", "Air Fryer" } } },
	    { "furniture", "Furniture",
	      { { "chairs", "Chairs", "Chair" },
		{ "desks", "Desks", "Desk" },
		{ "sofas", "Sofas", "Sofa" },
		{ "bookshelves", "Bookshelves", "Bookshelf" },
		{ "coffee-tables", "Coffee Tables", "Coffee Table" } } },
	    { "bedding", "Bedding",
	      { { "pillows", "Pillows", "Pillow" },
		{ "duvets", "Duvets", "Duvet" },
		{ "blankets", "Blankets", "Blanket" },
		{ "sheet-sets", "Sheet Sets", "Sheet Set" } } } },
	  { "Casaluna", "Hearthway", "Kitchora", "Norrbo", "Ovenly",
	    "Potterton", "Saltmarsh", "Tavola", "Woodhaven", "Brisko",
	    "Cuisto", "Dormio", "Fjelde", "Grano" },
	  { "Non-Stick", "Stainless", "Cast-Iron", "Classic", "Modern",
	    "Rustic", "Minimalist", "Heavy-Duty", "Ceramic", "Scandinavian",
	    "Stackable", "Cordless", "Programmable", "Handcrafted" },
	  { "stainless steel", "cast iron", "ceramic", "oak", "walnut",
	    "bamboo", "cotton", "linen", "glass", "copper" },
	  "capacity",
	  { "0.5 l", "1 l", "1.5 l", "1.7 l", "2 l", "3 l", "4 l", "5 l",
	    "6 l", "8 l" },
	  { "dishwasher safe", "oven safe up to 260 degrees",
	    "with an induction-ready base", "with a keep-warm function",
	    "with soft-close hinges", "with a removable washable cover",
	    "with an anti-slip base", "with a two-year guarantee",
	    "with twelve preset programmes", "assembled in minutes",
	    "with hypoallergenic filling", "with a matte finish" },
	  { "everyday cooking", "small kitchens", "family dinners",
	    "guest rooms", "open-plan living", "weekend baking",
	    "reading corners", "restful sleep" },
	  599, 189900 },
	{ "fashion", "Fashion",
	  { { "womens-clothing", "Women's Clothing",
	      { { "dresses", "Dresses", "Dress" },
		{ "blouses", "Blouses", "Blouse" },
		{ "skirts", "Skirts", "Skirt" },
		{ "cardigans", "Cardigans", "Cardigan" } } },
	    { "mens-clothing", "Men's Clothing",
	      { { "shirts", "Shirts", "Shirt" },
		{ "jackets", "Jackets", "Jacket" },
		{ "trousers", "Trousers", "Trousers" },
		{ "hoodies", "Hoodies", "Hoodie" } } },
	    { "shoes", "Shoes",
	      { { "sneakers", "Sneakers", "Sneakers" },
		{ "boots", "Boots", "Boots" },
		{ "sandals", "Sandals", "Sandals" },
		{ "loafers", "Loafers", "Loafers" } } },
	    { "accessories", "Accessories",
	      { { "backpacks", "Backpacks", "Backpack" },
		{ "wallets", "Wallets", "Wallet" },
		{ "belts", "Belts", "Belt" },
		{ "sunglasses", "Sunglasses", "Sunglasses" },
		{ "watches", "Watches", "Watch" } } } },
	  { "Maison Reve", "Urbano", "Linnea", "Kestrel", "Ardent", "Bellwood",
	    "Corvo", "Duna", "Elske", "Fenwick", "Glenmoor", "Hollis",
	    "Isola", "Juno" },
	  { "Slim-Fit", "Oversized", "Classic", "Vintage", "Organic",
	    "Lightweight", "Waterproof", "Quilted", "Casual", "Tailored",
	    "Knitted", "Relaxed", "Breathable", "Recycled" },
	  { "cotton", "wool", "linen", "leather", "denim", "silk", "cashmere",
	    "polyester", "suede", "canvas" },
	  "size",
	  { "xs", "s", "m", "l", "xl", "xxl", "38", "40", "42", "44" },
	  { "machine washable at 30 degrees", "with reinforced seams",
	    "with a relaxed cut", "with hidden pockets",
	    "with a water-repellent finish", "with a cushioned insole",
	    "with adjustable straps", "with a soft brushed lining",
	    "ethically made", "with a two-way zip", "with contrast stitching",
	    "with a scratch-resistant lens" },
	  { "the office", "weekends", "travel", "evenings out", "the gym",
	    "rainy days", "summer holidays", "city walks" },
	  1499, 39900 },
	{ "sports-outdoors", "Sports & Outdoors",
	  { { "fitness", "Fitness",
	      { { "dumbbells", "Dumbbells", "Dumbbell" },
		{ "yoga-mats", "Yoga Mats", "Yoga Mat" },
		{ "kettlebells", "Kettlebells", "Kettlebell" },
		{ "resistance-bands", "Resistance Bands", "Resistance Band" } } },
	    { "cycling", "Cycling",
	      { { "bicycles", "Bicycles", "Bicycle" },
		{ "bike-helmets", "Bike Helmets", "Bike Helmet" },
		{ "bike-lights", "Bike Lights", "Bike Light" },
		{ "saddles", "Saddles", "Saddle" } } },
	    { "camping", "Camping",
	      { { "tents", "Tents", "Tent" },
		{ "sleeping-bags", "Sleeping Bags", "Sleeping Bag" },
		{ "lanterns", "Lanterns", "Lantern" },
		{ "hiking-poles", "Hiking Poles", "Hiking Pole" } } },
	    { "team-sports", "Team Sports",
	      { { "footballs", "Footballs", "Football" },
		{ "basketballs", "Basketballs", "Basketball" },
		{ "tennis-rackets", "Tennis Rackets", "Tennis Racket" } } } },
	  { "Trailpeak", "Ironclad", "Velocity", "Summit", "Aerofit", "Bolder",
	    "Cragline", "Driftwood", "Everpace", "Flexcore", "Gritstone",
	    "Highland", "Kinetik", "Stride" },
	  { "Adjustable", "Lightweight", "Ultralight", "Heavy-Duty", "Pro",
	    "Compact", "All-Weather", "Non-Slip", "Insulated", "Foldable",
	    "Reflective", "Padded", "Hybrid", "Trail" },
	  { "steel", "aluminium", "nylon", "rubber", "foam", "carbon",
	    "polyester", "neoprene", "cork", "titanium" },
	  "weight",
	  { "0.5 kg", "1 kg", "2 kg", "4 kg", "6 kg", "8 kg", "10 kg",
	    "12 kg", "16 kg", "20 kg" },
	  { "with a non-slip grip", "with a four-season rating",
	    "packs down small", "with reflective details",
	    "with a USB rechargeable battery", "tested for rough terrain",
	    "with a lifetime warranty", "with quick-release clamps",
	    "with a breathable mesh", "with a storm-proof flysheet",
	    "with a carry strap", "with an anti-burst coating" },
	  { "home workouts", "trail running", "commuting by bike",
	    "weekend camping", "mountain hikes", "club training",
	    "outdoor adventures", "beginners" },
	  799, 149900 },
	{ "beauty", "Beauty",
	  { { "skincare", "Skincare",
	      { { "moisturizers", "Moisturizers", "Moisturizer" },
		{ "serums", "Serums", "Serum" },
		{ "cleansers", "Cleansers", "Cleanser" },
		{ "sunscreens", "Sunscreens", "Sunscreen" } } },
	    { "hair-care", "Hair Care",
	      { { "shampoos", "Shampoos", "Shampoo" },
		{ "conditioners", "Conditioners", "Conditioner" },
		{ "hair-dryers", "Hair Dryers", "Hair Dryer" },
		{ "straighteners", "Straighteners", "Straightener" } } },
	    { "makeup", "Makeup",
	      { { "lipsticks", "Lipsticks", "Lipstick" },
		{ "mascaras", "Mascaras", "Mascara" },
		{ "foundations", "Foundations", "Foundation" } } } },
	  { "Lumiere", "Aquavera", "Belle Rose", "Celestia", "Dermalis",
	    "Evergleam", "Floralia", "Glowry", "Herbalyn", "Iris Bloom",
	    "Jadore", "Kalma", "Lavendra", "Mirelle" },
	  { "Hydrating", "Gentle", "Nourishing", "Vegan", "Fragrance-Free",
	    "Long-Lasting", "Matte", "Brightening", "Soothing", "Ionic",
	    "Volumising", "Sensitive", "Refillable", "Overnight" },
	  { "aloe vera", "shea butter", "argan oil", "vitamin c",
	    "hyaluronic acid", "green tea", "charcoal", "rosehip",
	    "ceramide", "niacinamide" },
	  "skin_type",
	  { "dry", "oily", "combination", "normal", "sensitive", "all",
	    "mature", "acne-prone", "dull", "dehydrated" },
	  { "dermatologically tested", "with SPF 50 protection",
	    "free of parabens and sulphates", "with a recyclable pump",
	    "cruelty free", "with a cooling ceramic plate",
	    "absorbs in seconds", "with three heat settings",
	    "smudge proof for twelve hours", "with natural extracts",
	    "suitable for daily use", "with a travel-size bottle" },
	  { "morning routines", "dry winters", "sunny holidays",
	    "sensitive skin", "long days", "curly hair", "evening events",
	    "quick touch-ups" },
	  399, 19900 },
	{ "toys-games", "Toys & Games",
	  { { "puzzles-games", "Puzzles & Games",
	      { { "jigsaw-puzzles", "Jigsaw Puzzles", "Jigsaw Puzzle" },
		{ "board-games", "Board Games", "Board Game" },
		{ "card-games", "Card Games", "Card Game" } } },
	    { "building", "Building & Construction",
	      { { "building-blocks", "Building Blocks", "Building Blocks" },
		{ "construction-sets", "Construction Sets", "Construction Set" } } },
	    { "dolls-figures", "Dolls & Figures",
	      { { "dolls", "Dolls", "Doll" },
		{ "action-figures", "Action Figures", "Action Figure" },
		{ "plush-toys", "Plush Toys", "Plush Toy" } } } },
	  { "Playmoor", "Brickly", "Cubbo", "Dinoland", "Funtastic", "Gigglo",
	    "Happytails", "Jollybox", "Kiddora", "Tinkerwood", "Mimo",
	    "Nifty", "Oddbods", "Puzzlo" },
	  { "Educational", "Wooden", "Classic", "Deluxe", "Magnetic",
	    "Interactive", "Giant", "Family", "Travel", "Collector's",
	    "Glow-in-the-Dark", "Cuddly", "Musical", "Creative" },
	  { "wood", "plastic", "cardboard", "plush", "felt", "vinyl",
	    "cotton", "metal", "foam", "paper" },
	  "age",
	  { "0+", "1+", "3+", "5+", "6+", "8+", "10+", "12+", "14+", "adult" },
	  { "with 1000 pieces", "for two to six players",
	    "with rounded safety edges", "with a storage box",
	    "machine washable", "with sound effects",
	    "compatible with major brick systems", "with illustrated rules",
	    "made from sustainable wood", "with poseable joints",
	    "with a quick-start guide", "with replacement parts" },
	  { "family game nights", "rainy afternoons", "birthdays",
	    "long car journeys", "learning through play", "toddlers",
	    "collectors", "classrooms" },
	  499, 24900 },
	{ "garden", "Garden",
	  { { "garden-tools", "Garden Tools",
	      { { "pruning-shears", "Pruning Shears", "Pruning Shears" },
		{ "garden-hoses", "Garden Hoses", "Garden Hose" },
		{ "watering-cans", "Watering Cans", "Watering Can" },
		{ "lawn-mowers", "Lawn Mowers", "Lawn Mower" } } },
	    { "planters", "Planters & Pots",
	      { { "planters", "Planters", "Planter" },
		{ "raised-beds", "Raised Beds", "Raised Bed" } } },
	    { "outdoor-furniture", "Outdoor Furniture",
	      { { "garden-chairs", "Garden Chairs", "Garden Chair" },
		{ "parasols", "Parasols", "Parasol" },
		{ "hammocks", "Hammocks", "Hammock" } } } },
	  { "Greenfold", "Hedgerow", "Bloomfield", "Thornbury", "Mossgate",
	    "Fernhill", "Oakridge", "Petalworks", "Rosemoor", "Willowby",
	    "Yardley", "Verdant", "Larkspur", "Briar" },
	  { "Expandable", "Cordless", "Weatherproof", "Self-Watering",
	    "Ergonomic", "Heavy-Duty", "Folding", "Galvanised", "Recycled",
	    "Frost-Resistant", "Reclining", "Tilting", "Raised", "Solar" },
	  { "steel", "aluminium", "teak", "acacia", "terracotta", "rattan",
	    "resin", "galvanised steel", "pine", "fibreglass" },
	  "dimensions",
	  { "30 cm", "40 cm", "50 cm", "60 cm", "80 cm", "100 cm", "120 cm",
	    "150 cm", "200 cm", "300 cm" },
	  { "with rust-proof blades", "with a 30 m hose", "UV stable",
	    "with drainage holes", "with a 40 V battery",
	    "folds flat for winter", "with a tilting canopy",
	    "with a grass box", "with a kink-free design",
	    "with a comfortable grip", "holds up to 150 kg",
	    "with a rain cover" },
	  { "small gardens", "balconies", "allotments", "summer evenings",
	    "vegetable patches", "patios", "lazy Sundays", "orchards" },
	  599, 99900 },
};

static const char *const colours[] = {
	"Black", "White", "Grey", "Blue", "Silver", "Red", "Green", "Navy",
	"Beige", "Brown", "Pink", "Gold", "Yellow", "Orange", "Purple",
	"Teal", "Olive", "Burgundy", "Charcoal", "Cream", "Turquoise",
	"Lavender", "Mustard", "Coral",
};

/* Model names: a series and a number ("Pro 5", "X217"). */
static const char *const series[] = {
	"Pro", "Air", "Max", "Lite", "Mini", "Plus", "One", "Go", "Ultra",
	"Neo", "Classic", "Edge", "Flex", "Core", "Prime", "Nova",
};

static const char *const store_words_a[] = {
	"North", "Urban", "Blue", "Golden", "Little", "Green", "Silver",
	"Bright", "Happy", "Old", "Wild", "Royal", "Coastal", "Copper",
	"Maple", "Harbour", "Sunny", "Velvet", "Iron", "Cedar",
};

static const char *const store_words_b[] = {
	"Outfitters", "Emporium", "Supply", "Market", "Goods", "Corner",
	"Trading", "House", "Depot", "Store", "Workshop", "Collective",
	"Bazaar", "Studio", "Company", "Shop",
};

static const char *const first_names[] = {
	"Ada", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Greta", "Hugo",
	"Ines", "Jonas", "Keiko", "Liam", "Maya", "Nikolai", "Olga", "Pablo",
	"Quinn", "Rosa", "Samir", "Tara", "Umar", "Vera", "Wen", "Yusuf",
};

static const char *const last_names[] = {
	"Andersen", "Bauer", "Costa", "Dubois", "Eriksen", "Fischer",
	"Garcia", "Hansen", "Ivanova", "Jensen", "Kowalski", "Larsen",
	"Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Schmidt",
	"Tanaka", "Urban", "Varga", "Weber", "Yilmaz", "Zhang",
};

static const char *const closers[] = {
	"Ships within two working days.",
	"Comes with a two-year warranty.",
	"Backed by a 30-day return policy.",
	"Packed in plastic-free packaging.",
	"Designed in Europe.",
	"Spare parts are available for ten years.",
	"A bestseller in its category.",
	"Limited stock: order soon.",
};

/* ---- the category tree ------------------------------------------------------ */

#define MAX_CATEGORIES 256

static seed_category tree[MAX_CATEGORIES];
static size_t tree_len;
static const leaf_def *tree_leaf[MAX_CATEGORIES];
static size_t leaves_of_dept[N(departments)][32];
static size_t leaf_count_of_dept[N(departments)];

static size_t tree_add(const char *slug, const char *name, int parent,
		       int dept, int leaf)
{
	seed_category *c = &tree[tree_len];

	c->slug = slug;
	c->name = name;
	c->parent = parent;
	c->department = dept;
	c->leaf = leaf;
	return tree_len++;
}

/* Built once, before any thread could ask (the generator's callers ask
 * from one thread first: seed_plan_make). */
static void tree_build(void)
{
	if (tree_len)
		return;
	for (size_t d = 0; d < N(departments); d++) {
		const dept_def *dd = &departments[d];
		size_t root = tree_add(dd->slug, dd->name, -1, (int)d, 0);

		for (size_t s = 0; s < N(dd->subs) && dd->subs[s].slug; s++) {
			const sub_def *sd = &dd->subs[s];
			size_t sub = tree_add(sd->slug, sd->name, (int)root,
					      (int)d, 0);

			for (size_t l = 0; l < N(sd->leaves) &&
					   sd->leaves[l].slug; l++) {
				size_t at = tree_add(sd->leaves[l].slug,
						     sd->leaves[l].name,
						     (int)sub, (int)d, 1);

				tree_leaf[at] = &sd->leaves[l];
				leaves_of_dept[d][leaf_count_of_dept[d]++] = at;
			}
		}
	}
}

const seed_category *seed_categories(size_t *count)
{
	tree_build();
	*count = tree_len;
	return tree;
}

/* ---- plan ------------------------------------------------------------------- */

void seed_plan_make(uint64_t seed, uint64_t products, seed_plan *plan)
{
	tree_build();
	memset(plan, 0, sizeof(*plan));
	plan->seed = seed;
	plan->products = products;
	plan->vendors = products / 5000 + 2;
	/* 1 to 3 stores a vendor, 2 on average: store i belongs to vendor
	 * i / 2, give or take (seed_store_make). */
	plan->stores = plan->vendors * 2;
	/* A fixed instant, not now: the same seed gives the same rows on
	 * any day. 2026-01-01T00:00:00Z. */
	plan->reference_time = 1767225600;
}

/* ---- rows ------------------------------------------------------------------- */

/* Appends to a fixed buffer, silently stopping at its end (every caller's
 * buffer is sized for the longest combination of the word lists). */
typedef struct sbuf {
	char *p;
	size_t cap, len;
} sbuf;

static void put(sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->len + 1 >= b->cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->len += (size_t)n < b->cap - b->len ? (size_t)n
						      : b->cap - b->len - 1;
}

static void slugify(const char *in, char *out, size_t cap)
{
	size_t n = 0;
	bool dash = false;

	for (; *in && n + 1 < cap; in++) {
		char c = *in;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			if (dash && n > 0 && n + 2 < cap)
				out[n++] = '-';
			out[n++] = c;
			dash = false;
		} else {
			dash = true;
		}
	}
	out[n] = '\0';
}

void seed_vendor_make(const seed_plan *plan, uint64_t index, seed_vendor *out)
{
	rng r = rng_for(plan->seed, SEED_VENDOR, index);
	const char *first = PICK(&r, first_names), *last = PICK(&r, last_names);

	seed_uuid(plan->seed, SEED_VENDOR, index, out->id);
	/* The seed in the address keeps catalogs of two seeds apart. */
	snprintf(out->email, sizeof(out->email),
		 "vendor%llu.seed%llu@example.com",
		 (unsigned long long)index, (unsigned long long)plan->seed);
	snprintf(out->display_name, sizeof(out->display_name), "%s %s", first,
		 last);
}

void seed_store_make(const seed_plan *plan, uint64_t index, seed_store *out)
{
	rng r = rng_for(plan->seed, SEED_STORE, index);
	const char *a = PICK(&r, store_words_a), *b = PICK(&r, store_words_b);
	char base[41];
	uint64_t tag = mix64(plan->seed ^ (index * 0x100000001b3ULL));

	seed_uuid(plan->seed, SEED_STORE, index, out->id);
	/* Pairs of stores per vendor, but some vendors keep one and lend the
	 * other to their neighbour: 1 to 3 each. */
	out->vendor = index / 2;
	if (index % 2 && chance(&r, 0.25) && out->vendor + 1 < plan->vendors)
		out->vendor++;
	out->department = (int)below(&r, N(departments));
	snprintf(out->name, sizeof(out->name), "%s %s %s", a,
		 departments[out->department].brands[below(&r, 14)], b);
	slugify(out->name, base, sizeof(base));
	snprintf(out->slug, sizeof(out->slug), "%s-%05x", base,
		 (unsigned)(tag & 0xfffff));
	snprintf(out->description, sizeof(out->description),
		 "%s sells %s: %s and more, for %s.", out->name,
		 departments[out->department].name,
		 departments[out->department].subs[0].name,
		 departments[out->department].uses[below(&r, 8)]);
	out->suspended = chance(&r, 0.02);
}

/* The store of product `index`: big stores hold most products. */
static uint64_t store_of(const seed_plan *plan, rng *r)
{
	double u = unit(r);

	return (uint64_t)(u * u * (double)plan->stores);
}

/* A price in minor units ending in 99 (or 49), log-uniform in [lo, hi]. */
static int64_t price_in(rng *r, int64_t lo, int64_t hi)
{
	double v = exp(log((double)lo) + unit(r) * (log((double)hi) -
						     log((double)lo)));
	int64_t p = (int64_t)v / 100 * 100 + (chance(r, 0.8) ? 99 : 49);

	return p < 49 ? 49 : p;
}

static void json_pair(sbuf *b, const char *key, const char *value, bool first)
{
	/* Keys and values come from the word lists above: no quote or
	 * backslash to escape. */
	put(b, "%s\"%s\": \"%s\"", first ? "" : ", ", key, value);
}

void seed_product_make(const seed_plan *plan, uint64_t index,
		       seed_product *out)
{
	rng r = rng_for(plan->seed, SEED_PRODUCT, index);
	seed_store st;
	const dept_def *d;
	const leaf_def *leaf;
	const char *brand, *adj, *adj2, *colour, *material, *extra;
	char model[24];
	sbuf t = { out->title, sizeof(out->title), 0 };
	sbuf s = { out->description, sizeof(out->description), 0 };
	sbuf a = { out->attributes, sizeof(out->attributes), 0 };
	size_t dept, nleaf;
	double u;

	memset(out, 0, sizeof(*out));
	seed_uuid(plan->seed, SEED_PRODUCT, index, out->id);
	out->store = store_of(plan, &r);
	seed_store_make(plan, out->store, &st);
	/* Most of a store's products are in its own department. */
	dept = chance(&r, 0.75) ? (size_t)st.department
				: below(&r, N(departments));
	d = &departments[dept];
	nleaf = leaf_count_of_dept[dept];
	out->category = leaves_of_dept[dept][below(&r, nleaf)];
	leaf = tree_leaf[out->category];

	brand = PICK_SKEWED(&r, d->brands);
	adj = PICK_SKEWED(&r, d->adjectives);
	adj2 = PICK(&r, d->adjectives);
	if (adj2 == adj)
		adj2 = NULL;
	colour = PICK_SKEWED(&r, colours);
	material = PICK_SKEWED(&r, d->materials);
	extra = PICK_SKEWED(&r, d->extra_values);
	if (chance(&r, 0.5))
		snprintf(model, sizeof(model), "%s %u", PICK(&r, series),
			 (unsigned)(1 + below(&r, 9)));
	else
		snprintf(model, sizeof(model), "%c%u",
			 (char)('A' + below(&r, 26)),
			 (unsigned)(100 + below(&r, 900)));

	switch (below(&r, 4)) {
	case 0:
		put(&t, "%s %s %s %s", brand, adj, leaf->noun, model);
		break;
	case 1:
		put(&t, "%s %s %s, %s", brand, leaf->noun, model, colour);
		break;
	case 2:
		put(&t, "%s %s %s by %s", adj, material, leaf->noun, brand);
		out->title[0] = (char)(out->title[0] >= 'a' &&
				       out->title[0] <= 'z'
				       ? out->title[0] - 'a' + 'A'
				       : out->title[0]);
		break;
	default:
		put(&t, "%s %s%s%s %s, %s", brand, adj, adj2 ? " " : "",
		    adj2 ? adj2 : "", leaf->noun, extra);
		break;
	}

	put(&s, "%s %s by %s: made of %s, %s.", leaf->noun, model, brand,
	    material, PICK(&r, d->features));
	if (chance(&r, 0.7))
		put(&s, " Ideal for %s, it comes in %s.", PICK(&r, d->uses),
		    colour);
	if (chance(&r, 0.5))
		put(&s, " Also %s.", PICK(&r, d->features));
	put(&s, " %s", PICK(&r, closers));

	put(&a, "{");
	json_pair(&a, "brand", brand, true);
	json_pair(&a, "color", colour, false);
	json_pair(&a, "material", material, false);
	if (chance(&r, 0.8))
		json_pair(&a, d->extra_key, extra, false);
	put(&a, "}");

	snprintf(out->image_url, sizeof(out->image_url),
		 "https://images.example.com/products/%s/1.jpg", out->id);
	out->price_minor = price_in(&r, d->price_lo, d->price_hi);
	out->currency = "EUR";
	u = unit(&r);
	out->status = u < 0.94 ? "active" : u < 0.98 ? "draft" : "archived";
	out->stock = chance(&r, 0.12) ? 0 : 1 + (int64_t)skewed(&r, 500);
	if (chance(&r, 0.3)) {
		out->rating_count = 0;
		out->rating_average = 0;
	} else {
		out->rating_count = 1 + (int32_t)skewed(&r, 2000);
		/* One decimal place, 2.5 to 5.0, leaning high. */
		out->rating_average =
			(double)(int)((5.0 - 2.5 * unit(&r) * unit(&r)) * 10) /
			10.0;
	}
	out->sales_count = (int64_t)skewed(&r, 20000);
	/* Within two years before the reference time. */
	out->create_time = plan->reference_time -
			   (int64_t)below(&r, 2 * 365 * 86400);
}
