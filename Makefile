# vdc — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Binaries: path of the main package -> name in bin/.
CMDS := manager/cmd/dcmgr manager/cmd/vdc-manage hva/cmd/hva sta/cmd/sta scheduler/cmd/scheduler bench/cmd/vdcbench

.PHONY: help build run test test-unit test-integration test-chaos fuzz bench bench-short check fmt vet clean

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## build every binary into bin/
	@mkdir -p $(BIN)
	@for c in $(CMDS); do \
		if [ -d $$c ]; then $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/$$(basename $$c) ./$$c || exit 1; fi; \
	done

run: build ## quick start: a local manager with demo data, in the foreground (Ctrl-C stops it)
	./scripts/quickstart.sh

test: ## the whole suite CI runs: unit + in-process cluster tests (race detector on)
	$(GO) test -race -count=1 -timeout 12m ./...

test-unit: ## fast tests only (skips in-process cluster tests)
	$(GO) test -count=1 -short ./...

test-integration: ## in-process cluster tests and multi-process manager tests (real raft, serf, HTTP)
	$(GO) test -race -count=1 -timeout 12m -run 'Cluster|Three|Failover|Restart|Rejoin|Forward|NoLeader|Process' ./manager/...

# Root: 3 managers, a scheduler and 2 hvas in network namespaces (scripts/netns-cluster.sh is the same rig by hand);
# `make test` runs a 45 s version. Extra flags: CHAOS_FLAGS='-chaos.seed=N -chaos.logs=DIR'.
test-chaos: ## chaos test: 110+ fault cycles (kill, partitions, pause, clock jump, full disk) checked for linearizability
	VDC_REAL=1 $(GO) test -count=1 -timeout 60m -run 'TestChaos$$' -v ./e2e/chaos -chaos.duration=5m -chaos.cycles=110 $(CHAOS_FLAGS)

fuzz: ## run every go fuzz target for FUZZTIME each (default 10s)
	FUZZTIME=$(or $(FUZZTIME),10s) ./scripts/fuzz.sh

# The full suite (about 40 min on 2 cores): raft, API, failover, place (1 manager, 1 scheduler, 50 hvas in one
# process, 5,000 instances, 3 runs), dc (3 dcmgr processes, 1 scheduler, 500 hvas in 5 processes, 20,000
# instances), dcfailover (the leader killed under the create load), scale (1 manager filled to 10,000 and 100,000
# instances; `vdcbench scale --managers 3` adds a 3-manager run) and serf (100, 200, 500 agents). It starts with a
# summary against issue 6's goals. The JSON is kept as bench/results/<date>-<commit>.json.
bench: build ## full benchmark suite; prints tables, writes bench/out/latest.json and bench/results/<date>-<commit>.json
	@mkdir -p bench/out bench/results
	./$(BIN)/vdcbench all --place-reps 3 --scale-managers 1 --json bench/out/latest.json
	cp bench/out/latest.json bench/results/$$(date -u +%Y-%m-%d)-$$(git rev-parse --short HEAD).json

bench-short: build ## seconds-long run of the benchmark harness
	./$(BIN)/vdcbench all --short

check: ## gofmt, go vet, staticcheck, go mod tidy diff, import rules
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) mod tidy -diff
	./scripts/check-imports.sh

fmt: ## format the code
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output and quick-start data
	rm -rf $(BIN) var
