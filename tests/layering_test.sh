#!/usr/bin/env bash
# Checks the include direction of DESIGN.md: a layer includes only from itself and the
# layers below it (core <- parallel <- moe <- optim <- launch; data on core).
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=(
  [core]="core"
  [parallel]="core parallel"
  [data]="core data"
  [moe]="core parallel moe"
  [optim]="core parallel moe optim"
  [launch]="core parallel data moe optim launch"
)
violations=0
for layer in "${!allowed[@]}"; do
  [ -d "$layer" ] || continue
  while IFS= read -r line; do
    file="${line%%:*}"
    included="$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$line")"
    case " ${allowed[$layer]} " in
      *" $included "*) ;;
      *) echo "layering: $file includes from $included/, which is above $layer/"; violations=$((violations + 1)) ;;
    esac
  done < <(grep -rEn '#include "(core|parallel|data|moe|optim|launch)/' "$layer" --include='*.h' --include='*.cc' --include='*.cu' || true)
done
if [ "$violations" -ne 0 ]; then
  echo "layering: $violations include(s) point up the layer stack"
  exit 1
fi
echo "layering: every include points down the layer stack"
