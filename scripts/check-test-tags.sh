#!/usr/bin/env bash
# Checks the test tags (Swift Testing 6.3 cannot select by tag, so the tiers run by target and the
# tags are documentation; this keeps them true): every test module declares the same tags, every
# suite carries exactly one tier tag matching its target's tier, and suites that drive skopeo,
# dockerd or containerd, or mount, say so (.realClients, .needsRoot). No build needed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/test-tiers.sh
fail=0
problem() { echo "check-test-tags: $*" >&2; fail=1; }
reference=Tests/${UNIT_TARGETS[0]}/Tags.swift
for dir in Tests/*/; do
  target=$(basename "$dir")
  cmp -s "$reference" "$dir/Tags.swift" || problem "$dir/Tags.swift is missing or differs from $reference"
  tier=""
  [[ " ${UNIT_TARGETS[*]} " == *" $target "* ]] && tier=unit
  [[ " ${INTEGRATION_TARGETS[*]} " == *" $target "* ]] && tier=integration
  [ -n "$tier" ] || { problem "$target is in no tier (scripts/test-tiers.sh)"; continue; }
  for file in "$dir"*.swift; do
    grep -q '@Test' "$file" || continue
    suites=$(grep -E '^\s*@Suite' "$file" || true)
    [ -n "$suites" ] || problem "$file has tests but no @Suite carrying tags"
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      [[ "$line" == *".tags("* ]] || { problem "$file: suite without tags: $line"; continue; }
      [[ "$line" == *".$tier"[,\)]* ]] || problem "$file: a $target suite must be tagged .$tier: $line"
      other=$([ $tier = unit ] && echo integration || echo unit)
      [[ "$line" != *".$other"[,\)]* ]] || problem "$file: tagged .$other in a $tier target: $line"
      if [ $tier = unit ] && [[ "$line" == *".realClients"* || "$line" == *".needsRoot"* ]]; then
        problem "$file: a unit suite cannot need real clients or root: $line"
      fi
    done <<< "$suites"
    if grep -qE 'Skopeo\.|DockerDaemon\(|ContainerdDaemon\(' "$file"; then
      grep -qE '^\s*@Suite.*\.realClients' "$file" || problem "$file drives skopeo/dockerd/containerd but is not tagged .realClients"
    fi
    if grep -qE 'DockerDaemon\(|ContainerdDaemon\(|"/bin/mount"' "$file"; then
      grep -qE '^\s*@Suite.*\.needsRoot' "$file" || problem "$file needs root (dockerd, containerd, mount) but is not tagged .needsRoot"
    fi
  done
done
[ $fail = 0 ] && echo "check-test-tags: ok"
exit $fail
