-- Every control plane on one database needs the same rampart.key: site
-- MQTT passwords and API tokens are derived from it, so a replica with
-- another key would issue credentials the others reject. The first
-- control plane (or migrate) stores the key's fingerprint, an HMAC of a
-- fixed label under the key (keys.Key.Fingerprint, never the key or a
-- plain hash of it); a control plane whose key has another is refused at
-- start (DB.CheckKey).
ALTER TABLE rampart_meta ADD COLUMN key_fingerprint text CHECK (key_fingerprint <> '');
