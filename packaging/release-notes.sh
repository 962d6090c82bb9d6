#!/usr/bin/env bash
# The release notes of one version: its section of CHANGELOG.md (Keep a Changelog), without
# the heading, as the release workflow hands them to `gh release create --notes-file`.
#
#   packaging/release-notes.sh VERSION        e.g. 0.1.0 (a leading v is dropped)
#
# CHANGELOG=path reads another file. Fails, naming the versions it has, when the changelog
# has no `## [VERSION]` section or the section is empty, so that a tag without notes stops
# the release before anything is published.
set -euo pipefail

die() { echo "release-notes: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: packaging/release-notes.sh VERSION"
version=${1#v}
changelog=${CHANGELOG:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/CHANGELOG.md}
[ -f "$changelog" ] || die "no $changelog"

# The section runs from `## [VERSION]` (a date may follow) to the next `## ` heading or the
# link definitions at the end; blank lines before it are dropped here, those after it by
# the command substitution.
notes=$(awk -v v="$version" '
  /^## / {
    if (on) exit
    h = $0; sub(/^## +/, "", h)
    if (index(h, "[" v "]") == 1) { on = 1; next }
  }
  on && /^\[[^]]+\]: / { exit }
  on { print }
' "$changelog" | sed -e '/./,$!d')

if [ -z "${notes//[[:space:]]/}" ]; then
  have=$(sed -n 's/^## \[\([^]]*\)\].*/\1/p' "$changelog" | paste -sd ' ' -)
  die "no notes for $version in $changelog (sections: ${have:-none})"
fi
printf '%s\n' "$notes"
