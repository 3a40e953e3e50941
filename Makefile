# Flick — one binary, two everyday commands: `make demo` and `make test`.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TAGS      := osusergo,netgo
BUILD     := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
FUZZTIME  ?= 3s
STATICCHECK_VERSION := v0.7.0

.DEFAULT_GOAL := help

.PHONY: help build vm-kernel functions bench-reflex bench-start bench-upstream powercut demo test test-unit test-e2e fuzz fuzz-long check cross bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

HELPERS   := internal/helper/bin

# flick embeds its container helpers (cmd/flick-monitor and cmd/flick-init,
# see internal/helper), built first for the same GOOS/GOARCH: $(1) is the
# output, $(2) the GOOS/GOARCH settings.
define build-flick
	$(2) $(BUILD) -tags $(TAGS) -o $(HELPERS)/flick-monitor ./cmd/flick-monitor
	$(2) $(BUILD) -tags $(TAGS) -o $(HELPERS)/flick-init ./cmd/flick-init
	cd $(HELPERS) && for h in flick-monitor flick-init; do sha256sum $$h | cut -d' ' -f1 > $$h.sha256; done
	$(2) $(BUILD) -tags $(TAGS),flickhelper -o $(1) ./cmd/flick
endef

build: ## build bin/flick (static, CGO off, the container helper embedded)
	$(call build-flick,bin/flick)

WASM_CC   ?= clang

functions: bin/functions/chime.wasm bin/functions/echo.wasm bin/functions/celsius.wasm bin/functions/goecho.wasm ## build the example functions (C via clang+wasi-libc, Go via wasip1)

bin/functions/%.wasm: examples/functions/%/*.c
	@mkdir -p bin/functions
	$(WASM_CC) --target=wasm32-wasi -O2 -Wl,--strip-all -o $@ $<

bin/functions/celsius.wasm bin/functions/goecho.wasm: bin/functions/%.wasm: examples/functions/%/main.go
	@mkdir -p bin/functions
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./examples/functions/$*

demo: build functions ## run Flick's main job on embedded defaults (daemon, MQTT-triggered function, latencies, pulls)
	./scripts/demo.sh

test: build test-unit test-e2e fuzz ## run every test: unit, root, e2e (real registry, docker CLI), short fuzzing

test-unit: ## package tests, race detector on
	CGO_ENABLED=1 $(GO) test -race -count=1 ./internal/... ./examples/...

test-e2e: build vm-kernel ## end-to-end tests driving bin/flick, the real registry and the docker CLI (and a cgroup v2 kernel under qemu)
	FLICK_BIN=$(CURDIR)/bin/flick FLICK_VM_KERNEL=$(CURDIR)/bin/vm $(GO) test -count=1 -timeout 20m ./test/e2e/...

vm-kernel: ## fetch Debian's cloud kernel into bin/vm for the cgroup v2 VM test (unpacked, not installed)
	scripts/vm-kernel.sh bin/vm

fuzz: ## run each fuzzer briefly (FUZZTIME=3s); seed corpora live in testdata/fuzz
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

powercut: build ## power-cut campaign, over 1,000 cuts: every operation plus 130 random ones (seeded, FLICK_POWERCUT_SEED) of a pull, a delta pull, an image removal, a function/route change and outbox traffic; prints a table (make test runs a sample)
	@rm -f bin/powercut-report.tsv; \
	FLICK_POWERCUT=$${FLICK_POWERCUT:-full} FLICK_POWERCUT_RANDOM=$${FLICK_POWERCUT_RANDOM:-130} FLICK_POWERCUT_REPORT=$(CURDIR)/bin/powercut-report.tsv \
	  FLICK_BIN=$(CURDIR)/bin/flick $(GO) test -count=1 -v -timeout 120m -run 'TestPowerCut' ./test/e2e/ >bin/powercut.log 2>&1; rc=$$?; \
	grep -E -e '^(--- FAIL|ok|FAIL)' -e 'operations, [0-9]+ cuts' -e 'SEED=' bin/powercut.log; \
	{ printf 'workload\tops\tcuts\tviolations\tseconds\n'; cat bin/powercut-report.tsv; } | column -t -s "$$(printf '\t')"; \
	awk -F'\t' '{c+=$$3; v+=$$4} END {printf "total: %d cuts, %d with violations (full log: bin/powercut.log)\n", c, v}' bin/powercut-report.tsv; \
	exit $$rc

fuzz-long: ## fuzz campaign: FUZZTIME=10m make fuzz-long
	$(MAKE) fuzz FUZZTIME=$${FUZZTIME:-5m}

check: ## gofmt, vet, staticcheck, go mod tidy, cross-builds
	@test -z "$$(gofmt -l cmd internal test bench)" || (gofmt -l cmd internal test bench; echo 'run gofmt -w'; exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
	$(MAKE) cross

cross: ## cross-build for the gateways: linux/arm64, linux/arm (v7), linux/amd64
	$(call build-flick,bin/flick-linux-arm64,GOOS=linux GOARCH=arm64)
	$(call build-flick,bin/flick-linux-armv7,GOOS=linux GOARCH=arm GOARM=7)
	$(call build-flick,bin/flick-linux-amd64,GOOS=linux GOARCH=amd64)
	@ls -l bin/flick-linux-*

bench: build functions ## Go benchmarks, then bench/reflex.sh (Wasm vs native) and bench/pull.sh (Flick vs dockerd)
	$(GO) test -run='^$$' -bench=. -benchtime=3x ./internal/...
	./bench/reflex.sh
	./bench/start.sh
	./bench/upstream.sh
	./bench/pull.sh
	./bench/delta.sh

bench-delta: build ## update bytes for five scenarios: layer pull vs balena-style rsync delta vs Flick's delta (needs debootstrap once)
	./bench/delta.sh

bench-reflex: build functions ## event-to-result latency and throughput, Wasm vs a native handler
	./bench/reflex.sh

bench-upstream: build ## forwarding to local mosquitto and nats-server: route vs raw client vs mosquitto bridge; draining; outbox append rate (INFLIGHT=16 for 16 in flight per device)
	./bench/upstream.sh

bench-start: build ## start-to-exit latency of /bin/true: flick (CLI, API, docker CLI) vs crun vs dockerd; daemon and monitor RSS
	./bench/start.sh

clean: ## remove build output
	rm -rf bin
