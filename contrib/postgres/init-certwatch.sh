#!/bin/sh
# The postgres image runs this once, when it initialises an empty data directory
# (/docker-entrypoint-initdb.d). certwatch needs no superuser: a role that owns its
# database is enough (it creates its tables and takes advisory locks there).
#
#   CERTWATCH_DB_PASSWORD  the role's password (required)
#   CERTWATCH_DB_USER      the role, default certwatch
#   CERTWATCH_DB_NAME      its database, default certwatch
#
# On a PostgreSQL you run yourself, the same three statements as a superuser do it.
set -eu
: "${CERTWATCH_DB_PASSWORD:?set CERTWATCH_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v role="${CERTWATCH_DB_USER:-certwatch}" -v db="${CERTWATCH_DB_NAME:-certwatch}" \
    -v password="$CERTWATCH_DB_PASSWORD" <<'SQL'
CREATE ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
