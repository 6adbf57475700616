-- Rampart's policy store, version 1: what store/bolt persists, as tables.
--
-- Documents (a group, a prefix list) are stored as the API's JSON, as bbolt
-- stores them, so reads serve them without assembling rows; beside them are
-- the relations a write transaction must check or a query must find without
-- decoding JSON (a group's sites, rule ids and matches, its references to
-- prefix lists, a resource's sync state and the sites it awaits). The rules
-- over these rows live in the controlplane package; the constraints here
-- only keep the rows consistent with each other.
--
-- Migrations run inside one transaction (PostgreSQL's DDL is
-- transactional), so they must not use CREATE INDEX CONCURRENTLY.

-- The store's identity, created once (by Open, after the migrations): the
-- epoch agents see in every desired state, so they notice a replaced store.
CREATE TABLE rampart_meta (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch     text    NOT NULL CHECK (epoch <> '')
);

-- Security groups: orgs/<org>/groups/<id>/json in bbolt.
CREATE TABLE security_groups (
    org_id     text        NOT NULL,
    id         text        NOT NULL,
    doc        jsonb       NOT NULL, -- the group as the API's JSON
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

-- A group's rules by id and match (direction, protocol, port, address): the
-- index bbolt keeps beside the JSON, so a replace keeps rule ids without
-- decoding the stored document.
CREATE TABLE filter_rules (
    org_id    text    NOT NULL,
    group_id  text    NOT NULL,
    id        text    NOT NULL,
    position  integer NOT NULL CHECK (position >= 0),
    direction text    NOT NULL,
    protocol  integer NOT NULL,
    port      text    NOT NULL,
    address   text    NOT NULL,
    PRIMARY KEY (org_id, group_id, id),
    UNIQUE (org_id, group_id, position),
    FOREIGN KEY (org_id, group_id) REFERENCES security_groups ON DELETE CASCADE
);

-- Prefix lists: orgs/<org>/lists/<id>.
CREATE TABLE prefix_lists (
    org_id     text        NOT NULL,
    id         text        NOT NULL,
    doc        jsonb       NOT NULL, -- the prefix list as the API's JSON
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

-- Which sites a group or a prefix list applies to directly; indexed by site,
-- to find what a site's policy is made of.
CREATE TABLE group_sites (
    org_id   text NOT NULL,
    group_id text NOT NULL,
    site_id  text NOT NULL,
    PRIMARY KEY (org_id, group_id, site_id),
    FOREIGN KEY (org_id, group_id) REFERENCES security_groups ON DELETE CASCADE
);
CREATE INDEX group_sites_by_site ON group_sites (org_id, site_id);

CREATE TABLE list_sites (
    org_id  text NOT NULL,
    list_id text NOT NULL,
    site_id text NOT NULL,
    PRIMARY KEY (org_id, list_id, site_id),
    FOREIGN KEY (org_id, list_id) REFERENCES prefix_lists ON DELETE CASCADE
);
CREATE INDEX list_sites_by_site ON list_sites (org_id, site_id);

-- A group's rule refers to a prefix list: orgs/<org>/refs/<list>\x00<group>.
-- RESTRICT makes the database itself refuse to delete a list still referred
-- to, in the same transaction as the check the domain makes.
CREATE TABLE list_refs (
    org_id   text NOT NULL,
    list_id  text NOT NULL,
    group_id text NOT NULL,
    PRIMARY KEY (org_id, list_id, group_id),
    FOREIGN KEY (org_id, list_id) REFERENCES prefix_lists ON DELETE RESTRICT,
    FOREIGN KEY (org_id, group_id) REFERENCES security_groups ON DELETE CASCADE
);
CREATE INDEX list_refs_by_group ON list_refs (org_id, group_id);

-- A group's or prefix list's sync: controlplane.SyncState, stored as
-- orgs/<org>/sync/<kind>\x00<id> in bbolt. Its status index (bbolt's
-- status/ bucket, for metrics) is a GROUP BY here, and its deadline index
-- (deadlines/) the partial index below. No foreign key to the resource: the
-- kind says which table, and the store deletes both in one transaction.
CREATE TABLE sync_states (
    org_id      text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('security_group', 'prefix_list')),
    resource_id text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('active', 'syncing', 'failed')),
    started     timestamptz,
    deadline    timestamptz CHECK (status <> 'syncing' OR deadline IS NOT NULL),
    error       text        NOT NULL DEFAULT '',
    PRIMARY KEY (org_id, kind, resource_id)
);
CREATE INDEX sync_states_syncing_by_deadline ON sync_states (deadline) WHERE status = 'syncing';

-- SyncState.Awaiting: each site a resource waits for, with the lowest
-- revision that confirms it (bbolt's awaiting/ index and the map in the
-- sync JSON, as one thing). Indexed by site for status ingestion.
CREATE TABLE sync_awaiting (
    org_id      text   NOT NULL,
    kind        text   NOT NULL,
    resource_id text   NOT NULL,
    site_id     text   NOT NULL,
    revision    bigint NOT NULL CHECK (revision >= 0),
    PRIMARY KEY (org_id, kind, resource_id, site_id),
    FOREIGN KEY (org_id, kind, resource_id) REFERENCES sync_states ON DELETE CASCADE
);
CREATE INDEX sync_awaiting_by_site ON sync_awaiting (org_id, site_id);

-- Sites: controlplane.Site (orgs/<org>/sites/<site>), the Revisioner's
-- per-site bytes (sitedata/, the compiler's revision and policy hash, opaque
-- here), and the newest status report taken in (reports/), by which later
-- reports are ordered.
CREATE TABLE sites (
    org_id           text        NOT NULL,
    id               text        NOT NULL,
    online           boolean     NOT NULL DEFAULT false,
    last_seen        timestamptz,
    desired_revision bigint      NOT NULL DEFAULT 0 CHECK (desired_revision >= 0),
    applied_revision bigint      NOT NULL DEFAULT 0 CHECK (applied_revision >= 0),
    state            text        NOT NULL DEFAULT 'unknown'
                     CHECK (state IN ('in_sync', 'syncing', 'failed', 'offline', 'unknown')),
    last_error       text        NOT NULL DEFAULT '',
    agent_version    text        NOT NULL DEFAULT '',
    routeros_version text        NOT NULL DEFAULT '',
    board            text        NOT NULL DEFAULT '',
    sync_deadline    timestamptz,
    revisioner_data  bytea,
    report_epoch     text,
    report_revision  bigint      CHECK (report_revision >= 0),
    report_state     text,
    PRIMARY KEY (org_id, id)
);

-- Leases: one replica at a time does a duty (the sync deadline sweeper)
-- while it holds the named lease. Times are the database's clock, so the
-- replicas' clocks do not matter. token grows at every change of holder (a
-- fencing token); a released lease keeps its row, expired, so it never
-- goes back.
CREATE TABLE leases (
    name        text        PRIMARY KEY,
    holder      text        NOT NULL CHECK (holder <> ''),
    token       bigint      NOT NULL CHECK (token > 0),
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
