#!/usr/bin/env bash
# movie-db-backup DATABASE: a pg_dump (custom format, compressed) of DATABASE into
# /var/backups/movie-platform/DATABASE-<UTC time>.dump, then dumps older than
# BACKUP_RETENTION_DAYS (14) removed, the newest always kept. Run as postgres by
# movie-db-backup@DATABASE.service; restore with movie-db-restore.
set -euo pipefail
database="${1:?usage: movie-db-backup DATABASE}"
dir="${BACKUP_DIR:-/var/backups/movie-platform}"
retention_days="${BACKUP_RETENTION_DAYS:-14}"
case "$database" in *[!a-z0-9_]* | "") echo "movie-db-backup: not a database name: $database" >&2; exit 64 ;; esac

dump="$dir/$database-$(date -u +%Y%m%dT%H%M%SZ).dump"
# Written under another name and renamed when complete: a dump cut short never looks finished.
trap 'rm -f "$dump.partial"' EXIT
pg_dump --format=custom --dbname="$database" --file="$dump.partial"
pg_restore --list "$dump.partial" >/dev/null # readable from end to end
mv "$dump.partial" "$dump"
echo "movie-db-backup: $dump ($(stat -c %s "$dump") bytes)"

newest="$(find "$dir" -maxdepth 1 -name "$database-*.dump" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)"
find "$dir" -maxdepth 1 \( -name "$database-*.dump" -o -name "$database-*.dump.partial" \) \
    -mtime +"$((retention_days - 1))" ! -path "$newest" -print -delete |
    sed 's/^/movie-db-backup: removed (older than the retention) /'
