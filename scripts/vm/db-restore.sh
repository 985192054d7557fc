#!/usr/bin/env bash
# movie-db-restore DATABASE DUMP: puts DATABASE back as DUMP (a movie-db-backup file) holds it.
# The service using the database (inventory or billing) is stopped meanwhile and started again
# afterwards; whatever was written since the dump is replaced. Billing: orders that arrived since
# the dump were acknowledged to the broker and are not in the dump; see the README (Operations).
# Run as root.
set -euo pipefail
usage() { echo "usage: movie-db-restore DATABASE DUMP   (dumps: ls /var/backups/movie-platform)" >&2; exit 64; }
[ $# -eq 2 ] || usage
database="$1" dump="$2"
case "$database" in inventory | billing) ;; *) echo "movie-db-restore: the databases are inventory and billing, not $database" >&2; exit 64 ;; esac
[ -r "$dump" ] || { echo "movie-db-restore: cannot read $dump" >&2; exit 66; }
[ "$(id -u)" -eq 0 ] || { echo "movie-db-restore: run it as root (sudo)" >&2; exit 77; }
# Checked before anything is stopped.
runuser -u postgres -- pg_restore --list "$dump" >/dev/null ||
    { echo "movie-db-restore: $dump is not a readable pg_dump archive" >&2; exit 65; }

was_active=false
if systemctl is-active --quiet "$database" 2>/dev/null; then
    was_active=true
    systemctl stop "$database"
fi
restart() { if $was_active; then systemctl start "$database"; fi; }
trap restart EXIT

exists="$(runuser -u postgres -- psql -qAtc "SELECT 1 FROM pg_database WHERE datname = '$database'")"
if [ "$exists" = 1 ]; then
    # One transaction: a restore that fails leaves the database as it was.
    runuser -u postgres -- pg_restore --clean --if-exists --single-transaction --exit-on-error \
        --dbname="$database" <"$dump"
else
    runuser -u postgres -- pg_restore --create --exit-on-error --dbname=postgres <"$dump"
fi
echo "movie-db-restore: $database restored from $dump"
