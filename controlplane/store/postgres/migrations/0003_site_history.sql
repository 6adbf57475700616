-- Each site's state history (controlplane.TransitionOf): one row per
-- transition, recorded in the transaction that writes the site's row,
-- numbered from 1 per site (seq), the newest controlplane.SiteHistoryLimit
-- kept. Every transaction that records one holds the site's row FOR
-- UPDATE, so the next seq (max + 1) is decided by one writer at a time.
CREATE TABLE site_history (
    org_id           text COLLATE "C" NOT NULL,
    site_id          text COLLATE "C" NOT NULL,
    seq              bigint NOT NULL CHECK (seq >= 1),
    at               timestamptz NOT NULL,
    from_state       text NOT NULL,
    to_state         text NOT NULL,
    desired_revision bigint NOT NULL CHECK (desired_revision >= 0),
    applied_revision bigint NOT NULL CHECK (applied_revision >= 0),
    error            text NOT NULL,
    online           boolean NOT NULL,
    PRIMARY KEY (org_id, site_id, seq)
);
