#!/usr/bin/env bash
# Import rules (house style §10.1): proto and common import nothing of ours
# but proto/common; the scheduler imports only proto/common; agents (hva, sta)
# never import the manager.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
check() { # <package pattern> <forbidden import regex> <why>
	local bad
	bad=$(go list -f '{{.ImportPath}}: {{join .Imports " "}}' "$1" 2>/dev/null | grep -E " $mod/($2)" || true)
	if [ -n "$bad" ]; then echo "import rule broken ($3):"; echo "$bad"; fail=1; fi
}
check ./proto/... 'manager|hva|sta|scheduler|common' "proto imports nothing internal"
check ./common/... 'manager|hva|sta|scheduler' "common imports only proto/common"
for d in scheduler hva sta; do
	[ -d "$d" ] && check "./$d/..." 'manager' "$d must not import the manager"
done
exit $fail
