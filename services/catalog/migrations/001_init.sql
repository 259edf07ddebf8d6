-- Catalog: stores, the category tree, products with their stock, and
-- stock reservations of orders. Applied by pg_migrate (services/common/pg.c)
-- inside one transaction, under the schema's advisory lock, with
-- search_path set to `catalog`; names are still qualified so the file reads
-- the same anywhere.

CREATE TABLE catalog.stores (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- An account id of the account service (another schema: no foreign key).
    owner_id    uuid        NOT NULL,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    slug        text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
    description text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stores_owner_idx ON catalog.stores (owner_id);

CREATE TABLE catalog.categories (
    id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL at the root. Categories are never deleted, so no cascade.
    parent_id   uuid        REFERENCES catalog.categories (id),
    slug        text        NOT NULL CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    create_time timestamptz NOT NULL DEFAULT now()
);

-- A slug is unique among its siblings; roots are siblings of one another
-- (a plain UNIQUE (parent_id, slug) would let NULL parents repeat).
CREATE UNIQUE INDEX categories_parent_slug_key ON catalog.categories
    (coalesce(parent_id, '00000000-0000-0000-0000-000000000000'::uuid), slug);

CREATE TABLE catalog.products (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    store_id       uuid        NOT NULL REFERENCES catalog.stores (id),
    title          text        NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description    text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 5000),
    category_id    uuid        REFERENCES catalog.categories (id),
    price_minor    bigint      NOT NULL CHECK (price_minor >= 0),
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- key -> value, both strings (validate.h bounds them).
    attributes     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    image_urls     text[]      NOT NULL DEFAULT '{}',
    status         text        NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'active', 'archived')),
    -- Units that can still be sold, and units held by reservations: the
    -- checks are the last line against overselling.
    stock          bigint      NOT NULL DEFAULT 0 CHECK (stock >= 0),
    reserved       bigint      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- Kept by the review service.
    rating_average double precision NOT NULL DEFAULT 0,
    rating_count   integer     NOT NULL DEFAULT 0 CHECK (rating_count >= 0),
    sales_count    bigint      NOT NULL DEFAULT 0 CHECK (sales_count >= 0),
    create_time    timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX products_store_idx ON catalog.products (store_id);
CREATE INDEX products_category_idx ON catalog.products (category_id);

-- One hold per order: the order id is the idempotency key of
-- ReserveStock, ReleaseStock and CommitReservation.
CREATE TABLE catalog.reservations (
    order_id    uuid        PRIMARY KEY,
    status      text        NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'released', 'committed')),
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE catalog.reservation_lines (
    order_id    uuid   NOT NULL REFERENCES catalog.reservations (order_id),
    product_id  uuid   NOT NULL REFERENCES catalog.products (id),
    quantity    bigint NOT NULL CHECK (quantity >= 1),
    PRIMARY KEY (order_id, product_id)
);

-- Change feed for in-process readers of this schema: the product cache of
-- every running replica (and the search index) LISTENs on these channels
-- and drops or re-reads what changed. pg_notify is transactional: the
-- notice goes out at COMMIT, never for a rolled-back change, and its
-- payload is only the id, so readers always re-read the committed row.
CREATE FUNCTION catalog.notify_product_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_products', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER products_notify AFTER INSERT OR UPDATE ON catalog.products
    FOR EACH ROW EXECUTE FUNCTION catalog.notify_product_change();

-- A store's status decides whether its products are public; other store
-- changes (name, description) do not show in products.
CREATE FUNCTION catalog.notify_store_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('catalog_stores', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER stores_notify AFTER UPDATE OF status ON catalog.stores
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION catalog.notify_store_status();
