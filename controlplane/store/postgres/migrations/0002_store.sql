-- Rampart's policy store, version 2: the tables as the store (store.go)
-- reads and writes them, and what several control planes on one database
-- need. No binary wrote the policy tables of version 1 (only the epoch and
-- the leases were in use), so reshaping them loses nothing.

-- A group's or prefix list's document is the API's JSON byte for byte, as
-- text: reads splice the current status into the stored text (jsonb would
-- reorder its keys), and json would parse again, on every write, the 44 KB
-- the store has just encoded (a third of the server's CPU of a 250-rule
-- PUT, BENCHMARKS.md). Cast to json to query it by hand.
ALTER TABLE security_groups ALTER COLUMN doc TYPE text USING doc::text;
ALTER TABLE prefix_lists ALTER COLUMN doc TYPE text USING doc::text;

-- Ids and names compare byte by byte ("C"), as Go sorts them and bbolt
-- orders its keys, whatever the database's default collation: pages of
-- ids, and the order rows are locked in, must not depend on the locale.
ALTER TABLE security_groups ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE prefix_lists ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE group_sites ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN group_id TYPE text COLLATE "C",
    ALTER COLUMN site_id TYPE text COLLATE "C";
ALTER TABLE list_sites ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN list_id TYPE text COLLATE "C",
    ALTER COLUMN site_id TYPE text COLLATE "C";
ALTER TABLE list_refs ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN list_id TYPE text COLLATE "C",
    ALTER COLUMN group_id TYPE text COLLATE "C";
ALTER TABLE sync_states ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN resource_id TYPE text COLLATE "C";
ALTER TABLE sync_awaiting ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN kind TYPE text COLLATE "C",
    ALTER COLUMN resource_id TYPE text COLLATE "C", ALTER COLUMN site_id TYPE text COLLATE "C";
ALTER TABLE sites ALTER COLUMN org_id TYPE text COLLATE "C", ALTER COLUMN id TYPE text COLLATE "C";

-- A replace keeps rule ids from the stored document, read in the write's
-- transaction: rows of rules would cost a 250-rule PUT 250 inserts.
DROP TABLE filter_rules;

-- Organisations that stored anything. A policy write of an organisation
-- (a group or prefix list written or deleted, a site reserved) locks its
-- row first, FOR UPDATE: one writer per organisation, across replicas, as
-- bbolt has one writer per file, so the quotas, the references between
-- groups and lists and the sites' revisions are decided on a state no
-- other write changes meanwhile.
CREATE TABLE orgs (
    org_id     text COLLATE "C" PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- controlplane.SyncState.Version: the resource's ETag.
ALTER TABLE sync_states ADD COLUMN version bigint NOT NULL DEFAULT 0 CHECK (version >= 0);

-- When a site's desired_revision last grew (the database's clock): a
-- revision committed and not published a while later was committed by a
-- replica that died before publishing it (see site_published).
ALTER TABLE sites ADD COLUMN revised_at timestamptz;

-- The newest revision published of each site, by any replica. Publishing
-- locks the site's row here for the time of the publish, and skips a
-- document older than the one published: replica A's revision 5 cannot land
-- after replica B's 6. A table of its own, so that a publish waiting on the
-- broker holds up neither status ingestion nor writes of the site.
CREATE TABLE site_published (
    org_id       text COLLATE "C" NOT NULL,
    site_id      text COLLATE "C" NOT NULL,
    revision     bigint      NOT NULL DEFAULT 0 CHECK (revision >= 0),
    published_at timestamptz,
    PRIMARY KEY (org_id, site_id)
);

-- The audit trail: one event per write, recorded in the write's
-- transaction. key is controlplane.AuditKey (write time in Unix
-- nanoseconds, then a sequence number, both big-endian), so events sort by
-- time; event is the event's JSON as the API answers it (text, as the
-- documents are).
CREATE SEQUENCE audit_event_seq;
CREATE TABLE audit_events (
    org_id      text COLLATE "C" NOT NULL,
    key         bytea NOT NULL CHECK (length(key) = 16),
    resource_id text COLLATE "C" NOT NULL,
    event       text  NOT NULL,
    PRIMARY KEY (org_id, key)
);
CREATE INDEX audit_events_by_resource ON audit_events (org_id, resource_id, key);
-- Pruning walks every organisation's oldest events.
CREATE INDEX audit_events_by_key ON audit_events (key);

-- Decommissioning sites (controlplane/decommission.go). A site reads
-- "decommissioning" until it is forgotten, confirming the revision of its
-- empty document (decommission_revision).
ALTER TABLE sites DROP CONSTRAINT sites_state_check,
    ADD CONSTRAINT sites_state_check
    CHECK (state IN ('in_sync', 'syncing', 'failed', 'offline', 'unknown', 'decommissioning')),
    ADD COLUMN decommission_revision bigint NOT NULL DEFAULT 0 CHECK (decommission_revision >= 0);

-- A decommission under way ('decommissioning'), or done and its site's
-- retained topics not yet cleared by the MQTT side ('forgotten').
CREATE TABLE site_decommissions (
    org_id  text COLLATE "C" NOT NULL,
    site_id text COLLATE "C" NOT NULL,
    phase   text NOT NULL CHECK (phase IN ('decommissioning', 'forgotten')),
    PRIMARY KEY (org_id, site_id)
);

-- Forgotten sites, whose credentials and reports are refused until they
-- are enrolled again: controlplane.Decommissioned as JSON, and the
-- Revisioner's bytes of the site, so its revisions go on where they were
-- if it is named or enrolled again.
CREATE TABLE denied_sites (
    org_id          text COLLATE "C" NOT NULL,
    site_id         text COLLATE "C" NOT NULL,
    record          text NOT NULL,
    revisioner_data bytea,
    PRIMARY KEY (org_id, site_id)
);
