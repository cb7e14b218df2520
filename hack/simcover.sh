#!/usr/bin/env bash
# Share of statements of the cores and of the shells' state machines that
# the simulator's scenario library executes (issue 13's measure): runs the
# library test (every scenario in scenarios/ and scenarios/regressions/,
# fixed seed each) with coverage over PKGS and prints per-package and total
# statement coverage.
#   hack/simcover.sh [PKG...]      default: the two cores and the two shell state machines
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=${*:-"./agent/agentcore ./operator/opcore ./agent/link ./operator/runcore"}
have=()
for p in $pkgs; do [ -d "$p" ] && have+=("$p"); done
coverpkg=$(IFS=,; echo "${have[*]}")
out=${OUT:-_out}/simcover
rm -rf "$out"; mkdir -p "$out"
go test -count=1 -tags integration -run '^TestLibrary$' -coverpkg="$coverpkg" -coverprofile="$out/cover.txt" ./sim/ > "$out/test.txt" 2>&1 || { tail -20 "$out/test.txt"; exit 1; }
for p in "${have[*]}"; do :; done
go tool cover -func "$out/cover.txt" > "$out/func.txt"
# per package: statements covered / total, from the profile's blocks
awk -F'[: ,]' 'NR > 1 { split($1, a, "/"); f = $1; sub(/\/[^\/]*$/, "", f); n = $(NF-1); c = $NF; tot[f] += n; if (c > 0) cov[f] += n }
  END { for (f in tot) { printf "%-60s %6.1f%% of %d statements\n", f, 100 * cov[f] / tot[f], tot[f]; T += tot[f]; C += cov[f] }
        printf "%-60s %6.1f%% of %d statements\n", "total", 100 * C / T, T }' "$out/cover.txt" | sort
