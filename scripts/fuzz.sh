#!/usr/bin/env bash
# Runs every go fuzz target of the repository for FUZZTIME each (default
# 10s), one worker per target. A finding fails the run and leaves its input
# under the package's testdata/fuzz/<Target>/ (commit it as a seed once
# fixed). Every target also runs its seed corpus in a plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
status=0
while IFS=: read -r file name; do
	dir=$(dirname "$file")
	echo "== $dir $name ($FUZZTIME)"
	if ! (cd "$dir" && go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel 1 . 2>&1 | tail -3); then
		status=1
	fi
done < <(grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed 's/:func /:/' | sort)
exit $status
