#!/usr/bin/env bash
# The project's one test command (README "Run the tests"). CI runs it through .ci/run.
# Steps: vet, race-checked short tests of every module, then the whole suite without -short and
# without the race detector, so the slow tests (cluster, conformance, faults, month-scale runs:
# whatever skips under -short) run in their own step.
set -euo pipefail
cd "$(dirname "$0")/.."

# go.work has no root module, so `./...` does not work at the root: list every module's tree.
mapfile -t pkgs < <(go list -m -f '{{.Dir}}/...')

echo "== gofmt"
unformatted=$(gofmt -l pkg services)
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet "${pkgs[@]}"

echo "== short tests with -race"
go test -race -short -count=1 -timeout 15m "${pkgs[@]}"

echo "== full suite without -short (slow tests: cluster, conformance, faults)"
go test -count=1 -timeout 20m "${pkgs[@]}"
