# DiemBFT on libp2p. `make build` puts bin/diembft, bin/olympus, bin/replica
# and bin/client in bin/; `make run` runs configs/default.toml; `make test`
# runs the whole test suite, ending with the fault scenarios (`make scenarios`).

GO       ?= go
BIN      := bin
CONFIG   ?= configs/default.toml
SEEDS    ?= 5000
FUZZTIME ?= 10s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: all build run test sim twins lint fuzz clean report-screenshot scenarios

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/diembft ./cmd/olympus ./cmd/replica ./cmd/client

run: build
	$(BIN)/diembft run $(CONFIG)

# Concurrent packages run under the race detector; the pure protocol core
# (no goroutines) runs without it, which is much faster for the simulator.
# The commands' tests build and run the binaries in subprocesses, which Go's
# test cache does not see: -count=1, so that a change elsewhere never leaves
# them "(cached)" from before it.
test:
	$(GO) test -race ./p2p/... ./node/... ./olympus/...
	$(GO) test -race -count=1 ./cmd/...
	$(GO) test ./protocol/...
	$(MAKE) scenarios

# Benchmark per spec/config.md §5: latency and throughput modes, batch sizes
# 1, 100 and 1000, N = 4 and 7, printed as a table and written to
# runs/bench-sweep-<timestamp>/bench.json. `make bench BENCH_MODE=latency`
# runs one mode; BENCH_ARGS adds flags (e.g. --cpuprofile).
BENCH_MODE     ?= sweep
BENCH_DURATION ?= 20s
BENCH_ARGS     ?=
bench: build
	$(BIN)/diembft bench --mode $(BENCH_MODE) --duration $(BENCH_DURATION) $(BENCH_ARGS)

# The fault-injection scenario library (configs/scenarios, issue #6): runs
# every config there one at a time, checks each verdict against its
# "# expect:" line as ../shared/tools/check-run does, and prints a table. About
# 90 s on 2 cores, so `make test` runs it last. SCENARIOS=<regexp> runs the
# matching ones only; the runs go to runs/scenarios-<timestamp>/.
SCENARIOS ?=
scenarios: build
	$(BIN)/diembft scenarios configs/scenarios $(if $(SCENARIOS),--run '$(SCENARIOS)')

sim:
	$(GO) test ./protocol/sim -run TestRandomFaults -seeds $(SEEDS) -v

# Twins scenarios for n = 4 with one twin (sampled with SEED); the long form of
# the 2,000 that make test runs.
N    ?= 20000
SEED ?= 1
twins: build
	$(BIN)/diembft twins --generate $(N) --seed $(SEED)

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Runs every fuzz target of every package for $(FUZZTIME) each, one at a time
# (go test -fuzz takes a single target in a single package). A target that
# ends with a bare "context deadline exceeded" and writes no failing input is
# Go 1.26's fuzz coordinator racing its own -fuzztime deadline
# (golang/go#75804, fixed in Go 1.27), not a finding: it is reported as a
# flake; any failure that leaves an input in testdata/fuzz fails the target.
fuzz:
	@set -e; flakes=0; \
	for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target"; \
			before=$$(ls $$dir/testdata/fuzz/$$target 2>/dev/null | wc -l); \
			out=$$(mktemp); \
			if ! $(GO) test $$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) >$$out 2>&1; then \
				cat $$out; \
				after=$$(ls $$dir/testdata/fuzz/$$target 2>/dev/null | wc -l); \
				if [ "$$after" = "$$before" ] && grep -q 'context deadline exceeded' $$out; then \
					echo "== $$target: flake (golang/go#75804: no failing input written)"; flakes=$$((flakes+1)); \
				else rm -f $$out; exit 1; fi; \
			else tail -n 2 $$out; fi; \
			rm -f $$out; \
		done; \
	done; \
	echo "fuzz: every target ran; $$flakes coordinator flake(s)"

# Writes RUN's report.html again and renders it with headless Chromium into
# RUN/report.png (1280x2400): `make report-screenshot RUN=runs/default-...`.
# Needs chromium (Debian: apt-get install -y chromium).
CHROMIUM       ?= chromium
CHROMIUM_FLAGS := --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync
report-screenshot: build
	@test -n "$(RUN)" || { echo "usage: make report-screenshot RUN=<run directory>" >&2; exit 2; }
	$(BIN)/diembft report $(RUN)
	@profile=$$(mktemp -d); \
	$(CHROMIUM) $(CHROMIUM_FLAGS) --user-data-dir=$$profile --window-size=1280,2400 \
		--screenshot=$(abspath $(RUN))/report.png file://$(abspath $(RUN))/report.html 2>$$profile.log; \
	status=$$?; rm -rf $$profile; \
	if [ $$status -ne 0 ]; then cat $$profile.log >&2; rm -f $$profile.log; echo "$(CHROMIUM) failed (exit $$status)" >&2; exit $$status; fi; \
	rm -f $$profile.log; \
	echo "screenshot: $(abspath $(RUN))/report.png"

clean:
	rm -rf $(BIN)
