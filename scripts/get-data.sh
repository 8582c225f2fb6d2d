#!/usr/bin/env bash
# Prepares the bundled corpora from Debian packages into corpora/ (git-ignored):
#   fortunes  the `fortunes` package, about 2.5 MB of quotations (the quickstart default):
#             corpora/fortunes/{fortunes.txt, tokenizer/, fortunes_text_document.bin/.idx}
#   gcide     `dict-gcide`, the Collaborative International Dictionary of English (about 36 MB
#             of entries): corpora/gcide/{gcide.txt, tokenizer/, gcide_text_document.bin/.idx}
# usage: scripts/get-data.sh [fortunes|gcide|all]     (default: fortunes)
# Idempotent: packages are installed only when missing, and each step is skipped when its
# outputs exist and are newer than its inputs. SY_BUILD_DIR (default build) holds switchyard.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WHAT="${1:-fortunes}"
case "$WHAT" in
  fortunes|gcide|all) ;;
  *) echo "usage: scripts/get-data.sh [fortunes|gcide|all]" >&2; exit 2 ;;
esac
BUILD_DIR="${SY_BUILD_DIR:-build}"
SWITCHYARD="$BUILD_DIR/switchyard"
START=$SECONDS

say() { echo "get-data: $*"; }

# The Debian packages, installed like scripts/install-deps.sh does: apt only for what is missing.
install_packages() {
  local missing=() package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$package")
    fi
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  say "installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# fresh OUTPUT... -- INPUT...: every output exists and is newer than every input.
fresh() {
  local outputs=() output input
  while [ "$1" != "--" ]; do outputs+=("$1"); shift; done
  shift
  for output in "${outputs[@]}"; do
    [ -e "$output" ] || return 1
    for input in "$@"; do
      [ "$output" -nt "$input" ] || return 1
    done
  done
}

# Builds switchyard when it is missing, or too old to know `preprocess`.
ensure_switchyard() {
  if [ ! -x "$SWITCHYARD" ] || ! "$SWITCHYARD" preprocess --help >/dev/null 2>&1; then
    say "building switchyard (scripts/build.sh)"
    SY_BUILD_DIR="$BUILD_DIR" bash scripts/build.sh
  fi
}

# prepare NAME TEXT VOCAB: tokenizer (trained on TEXT, VOCAB tokens) and the indexed dataset.
prepare() {
  local name="$1" text="$2" vocab="$3"
  local dir="corpora/$name" prefix="corpora/$name/${name}_text_document"
  local tokenizer="$dir/tokenizer"
  local args=(--input "$text" --separator % --output-prefix "$prefix" --tokenizer "$tokenizer")
  if ! fresh "$tokenizer/encoder.json" "$tokenizer/vocab.bpe" -- "$text"; then
    ensure_switchyard
    say "training a $vocab-token tokenizer on $text and writing $prefix.{bin,idx}"
    "$SWITCHYARD" preprocess "${args[@]}" --train-tokenizer --vocab-size "$vocab" --force
  elif ! fresh "$prefix.bin" "$prefix.idx" -- "$text" "$tokenizer/encoder.json" "$tokenizer/vocab.bpe"; then
    ensure_switchyard
    say "writing $prefix.{bin,idx}"
    "$SWITCHYARD" preprocess "${args[@]}"
  else
    say "$prefix.{bin,idx} and its tokenizer are up to date"
  fi
}

fortunes() {
  install_packages fortunes
  local source=/usr/share/games/fortunes dir=corpora/fortunes
  # The English fortune files: plain files only (the .u8 names are links to them), no .dat
  # indexes, and not the off/ directory of offensive ones (fortunes-off) if present.
  local files=()
  mapfile -t files < <(find "$source" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | LC_ALL=C sort)
  if [ "${#files[@]}" -eq 0 ]; then
    echo "get-data: no fortune files in $source" >&2
    exit 1
  fi
  mkdir -p "$dir"
  if ! fresh "$dir/fortunes.txt" -- "${files[@]}"; then
    say "concatenating ${#files[@]} fortune files into $dir/fortunes.txt"
    # Each file's last fortune gets its "%" line, so it does not run into the next file's first.
    local file
    for file in "${files[@]}"; do
      cat "$file"
      [ -z "$(tail -c 1 "$file")" ] || echo
      [ "$(tail -n 1 "$file")" = "%" ] || echo "%"
    done > "$dir/fortunes.txt.tmp"
    mv "$dir/fortunes.txt.tmp" "$dir/fortunes.txt"
  fi
  prepare fortunes "$dir/fortunes.txt" 4096
}

gcide() {
  install_packages dict-gcide
  local source=/usr/share/dictd/gcide.dict.dz dir=corpora/gcide
  mkdir -p "$dir"
  if ! fresh "$dir/gcide.txt" -- "$source"; then
    say "extracting dictionary entries from $source into $dir/gcide.txt"
    # One document per entry: an entry starts at an unindented line after a blank one. Lines
    # holding only a source tag ("[1913 Webster]", "[WordNet 1.5]", "[PJC]") go, and so do the
    # dictd metadata entries (00-database-*). No line of the dictionary is "%".
    gzip -dc "$source" | awk '
      /^[ \t]*\[[^]]*(Webster|WordNet|PJC|Century|RDH)[^]]*\][ \t]*$/ { next }
      /^[ \t]*$/ { blank = 1; next }
      {
        if (blank && /^[^ \t]/) {
          if (started && !skip) print "%"
          skip = /^00-/
          started = 1
        } else if (blank && started && !skip) {
          print ""
        }
        blank = 0
        if (!skip) print
      }' > "$dir/gcide.txt.tmp"
    mv "$dir/gcide.txt.tmp" "$dir/gcide.txt"
  fi
  prepare gcide "$dir/gcide.txt" 8192
}

case "$WHAT" in
  fortunes) fortunes ;;
  gcide) gcide ;;
  all) fortunes; gcide ;;
esac

say "done in $((SECONDS - START)) s"
for name in fortunes gcide; do
  [ -d "corpora/$name" ] || continue
  ( cd corpora && du -h --apparent-size "$name"/*.txt "$name"/*_text_document.bin "$name"/*_text_document.idx \
      "$name/tokenizer" 2>/dev/null | sed 's/^/  /' )
done
