-- Accounts. Applied by pg_migrate (services/common/pg.c) inside one
-- transaction, under the schema's advisory lock, with search_path set to
-- `account`; names are still qualified so the file reads the same anywhere.

CREATE TABLE account.accounts (
    -- gen_random_uuid() is built in since PostgreSQL 13 (no pgcrypto).
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored as given; uniqueness is case-insensitive (index below).
    email            text        NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    display_name     text        NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 100),
    roles            text[]      NOT NULL DEFAULT ARRAY['customer']::text[]
                     CHECK (cardinality(roles) >= 1
                            AND roles <@ ARRAY['customer', 'vendor', 'admin']::text[]),
    -- Preferences; '' means unset.
    locale           text        NOT NULL DEFAULT '' CHECK (length(locale) <= 35),
    currency         text        NOT NULL DEFAULT '' CHECK (currency = '' OR currency ~ '^[A-Z]{3}$'),
    marketing_opt_in boolean     NOT NULL DEFAULT false,
    -- argon2id PHC string; only the internal RPCs ever read it.
    password_hash    text        NOT NULL,
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now()
);

-- "Alice@Example.com" and "alice@example.com" are one account: lookups by
-- email use the same expression, so this index serves them too.
CREATE UNIQUE INDEX accounts_email_lower_key ON account.accounts (lower(email));

-- ListAccounts pages newest first with a keyset cursor on (create_time, id).
CREATE INDEX accounts_create_time_id_idx ON account.accounts (create_time DESC, id DESC);

-- The role filter of ListAccounts (roles @> ARRAY[...]).
CREATE INDEX accounts_roles_idx ON account.accounts USING gin (roles);
