# DiemBFT on libp2p. `make build` puts bin/diembft, bin/olympus, bin/replica
# and bin/client in bin/; `make run` runs configs/default.toml; `make test`
# runs the whole test suite.

GO       ?= go
BIN      := bin
CONFIG   ?= configs/default.toml
SEEDS    ?= 5000
FUZZTIME ?= 10s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)

.PHONY: all build run test sim lint fuzz clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/diembft ./cmd/olympus ./cmd/replica ./cmd/client

run: build
	$(BIN)/diembft run $(CONFIG)

# Concurrent packages run under the race detector; the pure protocol core
# (no goroutines) runs without it, which is much faster for the simulator.
test:
	$(GO) test -race ./p2p/... ./node/... ./olympus/... ./cmd/...
	$(GO) test ./protocol/...

sim:
	$(GO) test ./protocol/sim -run TestRandomFaults -seeds $(SEEDS) -v

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Runs every fuzz target of every package for $(FUZZTIME) each, one at a time
# (go test -fuzz takes a single target in a single package).
fuzz:
	@set -e; \
	for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME); \
		done; \
	done

clean:
	rm -rf $(BIN)
