#!/usr/bin/env bash
# Renders every docs/diagrams/*.puml to an SVG of the same name, offline.
#   docs/render-diagrams.sh            writes beside the sources (commit the result)
#   docs/render-diagrams.sh OUT_DIR    writes into OUT_DIR (used by tests/stages/70-docs.sh)
# Needs Debian's PlantUML and Graphviz: apt-get install -y plantuml graphviz
#
# Each SVG is made reproducible and checkable:
# - the machine-specific lines PlantUML writes into its trailing comment (Java, OS,
#   locale) are removed, the PlantUML version line is kept;
# - a comment <!--source-sha256:HEX--> records the SHA-256 of the .puml it came from.
set -euo pipefail

docs_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src_dir="$docs_dir/diagrams"
out_dir="${1:-$src_dir}"

if ! command -v plantuml >/dev/null 2>&1 || ! command -v dot >/dev/null 2>&1; then
  echo "render-diagrams: plantuml and graphviz are needed: apt-get install -y plantuml graphviz" >&2
  exit 1
fi

shopt -s nullglob
sources=("$src_dir"/*.puml)
if [ ${#sources[@]} -eq 0 ]; then
  echo "render-diagrams: no .puml file in $src_dir" >&2
  exit 1
fi

mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)

# Every source must name its diagram after its file: PlantUML takes the output
# file name from "@startuml NAME".
for src in "${sources[@]}"; do
  name=$(basename "$src" .puml)
  first=$(grep -m1 '^@startuml' "$src" || true)
  if [ "$first" != "@startuml $name" ]; then
    echo "render-diagrams: $src must start with '@startuml $name' (found '${first:-nothing}')" >&2
    exit 1
  fi
done

# -failfast2: check every source first and stop on a syntax error.
JAVA_TOOL_OPTIONS="-Djava.awt.headless=true" \
  plantuml -tsvg -charset UTF-8 -failfast2 -o "$out_dir" "${sources[@]}" 2> >(grep -v '^Picked up JAVA_TOOL_OPTIONS' >&2)

for src in "${sources[@]}"; do
  name=$(basename "$src" .puml)
  svg="$out_dir/$name.svg"
  if [ ! -s "$svg" ]; then
    echo "render-diagrams: PlantUML wrote no $svg" >&2
    exit 1
  fi
  if grep -q 'Syntax Error' "$svg"; then
    echo "render-diagrams: $src has a syntax error (see $svg)" >&2
    exit 1
  fi
  hash=$(sha256sum "$src" | cut -d' ' -f1)
  HASH="$hash" perl -0pi -e '
    s/\n(?:Java Runtime|JVM|Java Version|Operating System|Default Encoding|Language|Country):[^\n]*//g;
    s{</svg>\s*\z}{<!--source-sha256:$ENV{HASH}--></svg>\n};
  ' "$svg"
  echo "rendered ${svg#"$PWD"/}"
done
