#!/bin/sh
# The registry's entrypoint in docker-compose.yml:  registry-entrypoint.sh CONFIG TOKEN_FILE
# Starts `registry serve` on a copy of CONFIG whose @REGISTRYUI_EVENTS_TOKEN@ is the shared secret
# of registry notifications (a registry config file cannot read the environment). The secret is
# REGISTRYUI_EVENTS_TOKEN when set (.env), else the one in TOKEN_FILE, else a new random one; it
# is written to TOKEN_FILE, in a volume the dashboard mounts read-only and reads as
# REGISTRYUI_EVENTS_TOKEN_FILE, so the two always agree.
set -eu
config="$1"
token_file="$2"

if [ -n "${REGISTRYUI_EVENTS_TOKEN:-}" ]; then
  (umask 077 && printf '%s' "$REGISTRYUI_EVENTS_TOKEN" > "$token_file.new")
  mv -f "$token_file.new" "$token_file"
elif [ ! -s "$token_file" ]; then
  (umask 077 && tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 43 > "$token_file.new")
  mv -f "$token_file.new" "$token_file"
fi
token="$(cat "$token_file")"
case "$token" in
  *[!A-Za-z0-9._~+/=-]*)
    echo "REGISTRYUI_EVENTS_TOKEN may only contain letters, digits and . _ ~ + / = -" >&2
    exit 64 ;;
esac
# Readable by the dashboard's group (the image runs as 10001:10001), by nobody else.
if [ "$(id -u)" = 0 ]; then chgrp 10001 "$token_file"; fi
chmod 0440 "$token_file"

rendered="${TMPDIR:-/tmp}/registry-config.yml"
(umask 077 && sed "s|@REGISTRYUI_EVENTS_TOKEN@|$token|g" "$config" > "$rendered")
exec registry serve "$rendered"
