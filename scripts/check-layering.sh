#!/usr/bin/env bash
# Checks every project #include against the layering table of docs/architecture.md ("The house"): each
# folder may include only itself and the folders below it. The CMake targets enforce the same rule at link
# time; this catches what the linker cannot see (an include of a header-only file the wrong way).
# Usage: scripts/check-layering.sh   (exits 1 and names each offending include)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# folder (longest match wins) -> allowed include prefixes of the project
declare -A ALLOWED=(
  [common]="common/"
  [model/ops]="model/ops/ common/"
  [model/loading]="model/loading/ common/"
  [model/layers]="model/layers/ model/ops/ model/loading/ common/"
  [model]="model/model_loader.h model/layers/ model/loading/ common/"
  [engine/tools]="engine/ model/ common/"
  [engine]="engine/ model/layers/ model/loading/ common/"
  [parallel]="parallel/ engine/ model/layers/ model/loading/ common/"
  [text]="text/"
  [client]="client/"
)
PROJECT_DIRS='^(common|model|engine|parallel|text|server|client|tests|bench|proto)/'

folder_of() {
  local f="$1" best=""
  for k in "${!ALLOWED[@]}"; do
    if [[ "$f" == "$k/"* ]] && [ ${#k} -gt ${#best} ]; then best="$k"; fi
  done
  echo "$best"
}

bad=0
checked=0
while IFS= read -r file; do
  folder="$(folder_of "$file")"
  [ -n "$folder" ] || continue
  while IFS= read -r inc; do
    [[ "$inc" =~ $PROJECT_DIRS ]] || continue
    ok=0
    for prefix in ${ALLOWED[$folder]}; do
      if [[ "$inc" == "$prefix"* ]]; then ok=1; break; fi
    done
    if [ "$ok" -eq 0 ]; then
      echo "layering: $file includes \"$inc\" ($folder/ may include: ${ALLOWED[$folder]})" >&2
      bad=$((bad + 1))
    fi
    checked=$((checked + 1))
  done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
done < <(git ls-files -co --exclude-standard -- '*.h' '*.cc' '*.cu' '*.cuh' | grep -v node_modules)

if [ "$bad" -ne 0 ]; then
  echo "check-layering: $bad include(s) go the wrong way (docs/architecture.md, \"The house\")" >&2
  exit 1
fi
echo "check-layering: $checked project includes follow the layering table"
