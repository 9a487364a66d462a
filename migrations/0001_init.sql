-- memoryd's PostgreSQL schema, version 1: the same state as the sled backend
-- (src/storage/sled_store.rs), one table per tree. Keys and names are compared
-- bytewise (COLLATE "C") so that listings come out in the same order as sled's.
-- Vectors are pgvector `vector` without a fixed dimension: the model's dimension
-- is recorded in memoryd_meta and checked on every open.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE memoryd_meta (
    key   text COLLATE "C" PRIMARY KEY,
    value jsonb NOT NULL
);

-- The namespace registry: one row per namespace ever written (deleted ones stay
-- as tombstones so that their change-log sequence never restarts). A commit
-- locks its namespace's row (SELECT … FOR UPDATE) and allocates change-log seqs
-- from last_seq inside its transaction.
CREATE TABLE namespaces (
    name            text COLLATE "C" PRIMARY KEY,
    created_at      timestamptz NOT NULL,
    parent          text COLLATE "C",
    metadata        jsonb NOT NULL,
    last_seq        bigint NOT NULL,
    summarized_upto bigint NOT NULL,
    deleted         boolean NOT NULL
);

-- Rows of messages and summaries: unique across both, increasing in commit
-- order within a namespace (commits of one namespace hold its registry row).
CREATE SEQUENCE record_rows START 1;

CREATE TABLE messages (
    row_id      bigint PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    namespace   text COLLATE "C" NOT NULL,
    role        text NOT NULL,
    name        text,
    content     text NOT NULL,
    at          timestamptz NOT NULL,
    agent_id    text,
    session_id  text,
    exchange_id text,
    metadata    jsonb NOT NULL,
    embedding   vector NOT NULL
);
CREATE INDEX messages_namespace ON messages (namespace, row_id);

CREATE TABLE summaries (
    row_id    bigint PRIMARY KEY,
    id        uuid NOT NULL UNIQUE,
    namespace text COLLATE "C" NOT NULL,
    body      jsonb NOT NULL,
    embedding vector NOT NULL
);
CREATE INDEX summaries_namespace ON summaries (namespace, row_id);

-- The change log: per namespace, gap-free seqs from 1.
CREATE TABLE changes (
    namespace text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    kind      text NOT NULL,
    ids       jsonb NOT NULL,
    at        timestamptz NOT NULL,
    actor     text,
    PRIMARY KEY (namespace, seq)
);

-- Shared context: the current state of each key (tombstones included), its
-- search vector, and every version.
CREATE TABLE context (
    namespace  text COLLATE "C" NOT NULL,
    key        text COLLATE "C" NOT NULL,
    entry      jsonb NOT NULL,
    expires_at timestamptz,
    deleted    boolean NOT NULL,
    embedding  vector,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX context_expiry ON context (expires_at) WHERE expires_at IS NOT NULL AND NOT deleted;

CREATE TABLE context_history (
    namespace text COLLATE "C" NOT NULL,
    key       text COLLATE "C" NOT NULL,
    version   bigint NOT NULL,
    body      jsonb NOT NULL,
    PRIMARY KEY (namespace, key, version)
);

-- The compare-and-set key space (agent registry, mailboxes, documents, cursors).
CREATE TABLE kv (
    key   text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- API keys (the token's SHA-256, never the token).
CREATE TABLE api_keys (
    id   text COLLATE "C" PRIMARY KEY,
    body jsonb NOT NULL
);

-- The audit chain and its head (one row, locked by every append).
CREATE TABLE audit (
    seq  bigint PRIMARY KEY,
    body jsonb NOT NULL
);
CREATE TABLE audit_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint NOT NULL,
    hash     text NOT NULL
);
INSERT INTO audit_head (only_row, seq, hash)
VALUES (true, 0, '0000000000000000000000000000000000000000000000000000000000000000');
