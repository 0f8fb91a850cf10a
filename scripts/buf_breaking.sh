#!/usr/bin/env bash
# buf breaking over the whole history of the contract: every commit that changed protos/ (or buf.yaml) is checked
# against its parent (the first parent of a merge), from the first commit on, then uncommitted changes against HEAD.
# A submission of many commits fails when any one of them breaks the contract, not only its last one.
#
# The rules are this script's own (RULES below: buf's FILE category over protos/, Google's vendored protos/google
# aside), never those of the buf.yaml of a commit under check: a commit cannot loosen the check that judges it (an
# `ignore`, an `except`, a narrower module), and a commit or parent without buf.yaml is checked all the same. A
# commit whose parent had no protos/ yet has nothing to break; one that deletes protos/ breaks everything.
#
# An intended break (a new major version, say) needs an explicit, reviewed exception: a line
# "<full 40-hex commit sha> <reason>" in .ci/buf-breaking-exceptions (an abbreviated sha or an empty reason does not
# count). A shallow clone cannot be checked: this fails, saying so, rather than pass without looking.
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

# The breaking rules, for both sides of every comparison (paths relative to the directory checked).
RULES='{"version":"v2","modules":[{"path":"protos"}],"breaking":{"use":["FILE"],"ignore":["protos/google"]}}'

# Writes protos/ of commit $1 into directory $2; fails when the commit has no protos/.
export_protos() {
  mkdir -p "$2"
  git cat-file -e "$1:protos" 2>/dev/null || return 1
  git archive "$1" protos | tar -x -C "$2"
}

# The reason recorded for commit $1 in the exceptions file; fails when there is none (or it is empty).
exception_for() {
  [ -f "$exceptions" ] || return 1
  local line reason
  line="$(grep -E "^$1[[:space:]]" "$exceptions" | head -1)" || return 1
  reason="$(printf '%s' "${line#"$1"}" | sed -E 's/^[[:space:]]+//; s/[[:space:]]+$//')"
  [ -n "$reason" ] || return 1
  printf '%s\n' "$reason"
}

# buf breaking of directory $1 against directory $2, both under RULES. A side without protos/ is an empty module.
breaking() {
  mkdir -p "$1/protos" "$2/protos"
  (cd "$1" && "$buf" breaking --config "$RULES" --against "$2" --against-config "$RULES")
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
  if ! export_protos "$parent" "$work/old"; then
    continue # the parent has no protos/: no contract to break yet
  fi
  export_protos "$commit" "$work/new" || true # none left: every file of the parent's contract is deleted
  checked=$((checked + 1))
  if ! breaking "$work/new" "$work/old"; then
    echo "buf breaking: commit $subject breaks the contract of its parent (above). Make the change additive" \
      "(docs/style.md: new fields and RPCs, never renumbered, retyped or removed ones), or, for an intended" \
      "break, add the line '$commit <reason>' to .ci/buf-breaking-exceptions" >&2
    failed=1
  fi
done

if [ -n "$(git status --porcelain -- protos buf.yaml)" ]; then
  rm -rf "$work/head" "$work/tree"
  if export_protos HEAD "$work/head"; then
    mkdir -p "$work/tree"
    [ ! -d protos ] || cp -R protos "$work/tree/protos"
    checked=$((checked + 1))
    if ! breaking "$work/tree" "$work/head"; then
      echo "buf breaking: the uncommitted changes to protos/ break the contract of HEAD (above)" >&2
      failed=1
    fi
  fi
fi

if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "buf breaking: no breaking change in $checked change(s) to protos/ since the first commit"
