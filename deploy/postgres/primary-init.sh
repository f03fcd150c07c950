#!/bin/sh
# The primary of docker-compose.yml: let the replica stream from it (password, any address of
# the compose network). Runs once, when the image's entrypoint initialises an empty data dir.
set -e
echo "host replication ${POSTGRES_USER} all scram-sha-256" >> "$PGDATA/pg_hba.conf"
