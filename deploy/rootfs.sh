#!/bin/sh
# Lays out the runtime image's root file system in OUT: the static bq-ingest binary, the CA
# bundle that TLS to Google needs, and a non-root user. Both builds of the image use it: the
# builder stage of deploy/Containerfile and deploy/test-image.sh (which builds the same runtime
# stage here, from scratch, with the binary built on this machine).
#
#   deploy/rootfs.sh OUT BINARY [CA_BUNDLE]
set -eu
out=$1
binary=$2
ca_bundle=${3:-/etc/ssl/certs/ca-certificates.crt}
# The image's user: 65532, the uid distroless calls "nonroot". Numeric in the Containerfile too,
# so that a runtime that checks runAsNonRoot can verify it without reading /etc/passwd.
uid=65532

[ -x "$binary" ] || { echo "rootfs.sh: no executable at $binary" >&2; exit 1; }
[ -s "$ca_bundle" ] || { echo "rootfs.sh: no CA bundle at $ca_bundle" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/tmp"
chmod 1777 "$out/tmp"
install -m 0755 "$binary" "$out/usr/local/bin/bq-ingest"
install -m 0644 "$ca_bundle" "$out/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
  "$uid" "$uid" >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$uid" >"$out/etc/group"
