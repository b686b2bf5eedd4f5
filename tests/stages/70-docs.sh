#!/usr/bin/env bash
# Stage 70: the architecture documents.
#  1. every AsyncAPI document in docs/asyncapi/ parses with the pinned @asyncapi/parser
#     with no error, follows the payload conventions of SPEC.md, and its examples match;
#  2. every diagram source docs/diagrams/*.puml has its SVG, the SVG was rendered from the
#     current source, equals a fresh offline render, and loads no external resource;
#  3. every relative link (and #anchor) in docs/**/*.md points to something that exists.
source "$(dirname "$0")/../lib.sh"
cd "$REPO_ROOT"

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok   $*"; }

# --- 1. AsyncAPI ------------------------------------------------------------
log "AsyncAPI documents (docs/asyncapi/*.asyncapi.yaml)"
ensure_node_modules
parser_version=$(node -p "require('./node_modules/@asyncapi/parser/package.json').version")
pinned=$(node -p "require('./package.json').devDependencies['@asyncapi/parser']")
if [ "$parser_version" = "$pinned" ]; then
  pass "@asyncapi/parser $parser_version (pinned in package.json)"
else
  fail "@asyncapi/parser $parser_version is installed, package.json pins $pinned"
fi
shopt -s nullglob
asyncapi_docs=(docs/asyncapi/*.asyncapi.yaml)
if [ ${#asyncapi_docs[@]} -eq 0 ]; then
  fail "no AsyncAPI document in docs/asyncapi/"
elif node docs/asyncapi/validate.mjs "${asyncapi_docs[@]}"; then
  pass "${#asyncapi_docs[@]} AsyncAPI document(s) valid"
else
  fail "AsyncAPI validation (see above)"
fi

# --- 2. Diagrams ------------------------------------------------------------
log "diagrams (docs/diagrams/*.puml -> *.svg)"
ensure_debs plantuml graphviz
render_dir=$(mktemp -d)
trap 'rm -rf "$render_dir"' EXIT
if ! docs/render-diagrams.sh "$render_dir" >/dev/null; then
  fail "docs/render-diagrams.sh could not render the diagrams"
fi
installed_version=$(plantuml -version 2>/dev/null | sed -n 's/^PlantUML version \([^ ]*\).*/\1/p' | head -n1 || true)
sources=(docs/diagrams/*.puml)
[ ${#sources[@]} -gt 0 ] || fail "no diagram source in docs/diagrams/"
for src in "${sources[@]}"; do
  name=$(basename "$src" .puml)
  svg="docs/diagrams/$name.svg"
  if [ ! -f "$svg" ]; then
    fail "$src has no rendered $svg (run docs/render-diagrams.sh)"
    continue
  fi
  recorded=$(grep -o 'source-sha256:[0-9a-f]\{64\}' "$svg" | head -n1 | cut -d: -f2 || true)
  actual=$(sha256sum "$src" | cut -d' ' -f1)
  if [ "$recorded" != "$actual" ]; then
    fail "$svg was not rendered from the current $src (run docs/render-diagrams.sh)"
    continue
  fi
  if cmp -s "$svg" "$render_dir/$name.svg"; then
    pass "$svg is current (identical to a fresh render)"
  else
    svg_version=$(grep -o 'PlantUML version [^(]*' "$svg" | head -n1 | sed 's/PlantUML version //' || true)
    if [ "$svg_version" = "$installed_version" ]; then
      fail "$svg differs from a fresh render of $src with the same PlantUML $installed_version (run docs/render-diagrams.sh)"
    else
      pass "$svg matches its source by hash (rendered with PlantUML ${svg_version:-?}, here $installed_version: not compared byte for byte)"
    fi
  fi
  # A picture in a Git web view must not load anything: only in-document references.
  if grep -Pq '(?:href\s*=\s*["'"'"'](?!#))|(?:url\(\s*["'"'"']?(?!#))|@import|<image\b|<script\b|<foreignObject\b' "$svg"; then
    fail "$svg references an external resource or embeds script"
  fi
done
for svg in docs/diagrams/*.svg; do
  [ -f "${svg%.svg}.puml" ] || fail "$svg has no source ${svg%.svg}.puml"
done

# --- 3. Links in the Markdown documents -------------------------------------
log "relative links in docs/**/*.md"
if python3 - "$REPO_ROOT" <<'PY'
import os, re, sys, urllib.parse

root = os.path.realpath(sys.argv[1])
docs = os.path.join(root, "docs")

def slug(heading):
    # GitHub's anchor for a heading: lower case, drop punctuation, spaces to hyphens.
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")

def anchors(path):
    found, counts, fence = set(), {}, False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            m = None if fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                s = slug(m.group(1))
                n = counts.get(s, 0)
                counts[s] = n + 1
                found.add(s if n == 0 else f"{s}-{n}")
    return found

def links(path):
    fence = False
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.lstrip().startswith("```"):
                fence = not fence
                continue
            if fence:
                continue
            line = re.sub(r"`[^`]*`", "", line)
            for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
                yield lineno, m.group(1)
            m = re.match(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", line)
            if m:
                yield lineno, m.group(1)

md_files = sorted(
    os.path.join(d, f) for d, _, fs in os.walk(docs) for f in fs if f.endswith(".md")
)
if not md_files:
    print("FAIL: no Markdown document in docs/")
    sys.exit(1)
bad = checked = 0
for md in md_files:
    rel_md = os.path.relpath(md, root)
    for lineno, target in links(md):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto: ... are not files of this repository
        checked += 1
        path_part, _, fragment = target.partition("#")
        path_part = urllib.parse.unquote(path_part)
        if path_part.startswith("/"):
            dest = os.path.join(root, path_part.lstrip("/"))
        elif path_part:
            dest = os.path.join(os.path.dirname(md), path_part)
        else:
            dest = md
        dest = os.path.realpath(dest)
        where = f"{rel_md}:{lineno}: {target}"
        if not (dest == root or dest.startswith(root + os.sep)):
            print(f"FAIL: {where} points outside the repository"); bad += 1; continue
        if not os.path.exists(dest):
            print(f"FAIL: {where}: {os.path.relpath(dest, root)} does not exist"); bad += 1; continue
        if fragment and dest.endswith(".md") and fragment not in anchors(dest):
            print(f"FAIL: {where}: no heading with anchor #{fragment}"); bad += 1; continue
print(f"{'ok  ' if bad == 0 else 'FAIL'} {checked} relative link(s) in {len(md_files)} Markdown file(s), {bad} broken")
sys.exit(1 if bad else 0)
PY
then
  pass "links"
else
  fail "broken relative links in docs (see above)"
fi

# Every diagram is shown by some document.
for svg in docs/diagrams/*.svg; do
  if ! grep -rqF "diagrams/$(basename "$svg")" docs --include='*.md'; then
    fail "$svg is not shown by any docs/*.md"
  fi
done

echo
if [ "$failures" -gt 0 ]; then
  echo "docs: $failures check(s) failed"
  exit 1
fi
echo "docs: all checks passed"
