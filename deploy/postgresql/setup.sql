-- Creates Rampart's role and database. Run once as the postgres superuser:
--   sudo -u postgres psql -v password="'...'" -f setup.sql
-- The control plane creates its tables itself (migrations run at start, one
-- replica at a time under an advisory lock), so the role owns the database
-- and needs no superuser rights.
CREATE ROLE rampart LOGIN PASSWORD :password;
CREATE DATABASE rampart OWNER rampart ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE rampart FROM PUBLIC;
