#!/bin/sh
# The streaming replica of docker-compose.yml: on first start, a base backup of the primary
# (pg_basebackup -R writes standby.signal and primary_conninfo); then a hot standby.
set -e
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h db -U "$POSTGRES_USER" -q; do sleep 1; done
  mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
  PGPASSWORD="$POSTGRES_PASSWORD" gosu postgres \
    pg_basebackup -h db -U "$POSTGRES_USER" -D "$PGDATA" -R -X stream -c fast
fi
exec gosu postgres postgres -c hot_standby=on -c hot_standby_feedback=on
