#!/usr/bin/env bash
# buf breaking over the whole history of the contract: every commit that changed protos/ (or buf.yaml) is checked
# against its parent (the first parent of a merge), from the first commit on, then uncommitted changes against HEAD.
# A submission of many commits fails when any one of them breaks the contract, not only its last one.
#
# An intended break (a new major version, say) needs an explicit, reviewed exception: a line
# "<full commit sha> <reason>" in .ci/buf-breaking-exceptions. A shallow clone cannot be checked: this fails, saying
# so, rather than pass without looking.
#
# Usage: scripts/buf_breaking.sh   (BUF: the buf binary, default tools/node_modules/.bin/buf)
set -euo pipefail
root="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
cd "$root"
buf="${BUF:-$root/tools/node_modules/.bin/buf}"
exceptions="$root/.ci/buf-breaking-exceptions"

if [ ! -x "$buf" ]; then
  echo "buf breaking: $buf not found: run \`make tools/node_modules/.bin/buf\` (npm ci in tools/)" >&2
  exit 2
fi
if [ "$(git rev-parse --is-shallow-repository)" = "true" ]; then
  echo "buf breaking: this clone is shallow, so the commits that changed protos/ cannot all be checked;" \
    "fetch the whole history (git fetch --unshallow) and run again" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Writes the contract (buf.yaml and protos/) of commit $1 into directory $2; fails when the commit has no buf.yaml.
export_contract() {
  mkdir -p "$2"
  git cat-file -e "$1:buf.yaml" 2>/dev/null || return 1
  git archive "$1" buf.yaml protos | tar -x -C "$2"
}

exception_for() {
  [ -f "$exceptions" ] || return 1
  grep -E "^$1[[:space:]]" "$exceptions" | head -1 | cut -d' ' -f2-
}

failed=0
checked=0
for commit in $(git rev-list --reverse --full-history HEAD -- protos buf.yaml); do
  parent="$(git rev-parse -q --verify "$commit^1" || true)"
  [ -n "$parent" ] || continue # the first commit: nothing to break
  subject="$(git log -1 --format='%h %s' "$commit")"
  if reason="$(exception_for "$commit")"; then
    echo "buf breaking: $subject: not checked, listed in .ci/buf-breaking-exceptions: $reason"
    continue
  fi
  rm -rf "$work/new" "$work/old"
  if ! export_contract "$parent" "$work/old" || ! export_contract "$commit" "$work/new"; then
    continue # no buf.yaml yet: no contract to compare
  fi
  checked=$((checked + 1))
  if ! (cd "$work/new" && "$buf" breaking --against "$work/old"); then
    echo "buf breaking: commit $subject breaks the contract of its parent (above). Make the change additive" \
      "(docs/style.md: new fields and RPCs, never renumbered, retyped or removed ones), or, for an intended" \
      "break, add the line '$commit <reason>' to .ci/buf-breaking-exceptions" >&2
    failed=1
  fi
done

if [ -n "$(git status --porcelain -- protos buf.yaml)" ]; then
  rm -rf "$work/head"
  if export_contract HEAD "$work/head"; then
    checked=$((checked + 1))
    if ! "$buf" breaking --against "$work/head"; then
      echo "buf breaking: the uncommitted changes to protos/ break the contract of HEAD (above)" >&2
      failed=1
    fi
  fi
fi

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "buf breaking: no breaking change in $checked change(s) to protos/ since the first commit"
