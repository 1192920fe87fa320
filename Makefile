# Every target runs over every Go module in the repository (the root module
# and nested ones such as examples/controller).
MODULES   := $(shell find . -name go.mod -not -path './.git/*' -exec dirname {} \; | sort)
GO        ?= go
COUNT     ?= 6
BENCH     ?= .
BENCHTIME ?= 1s
FUZZTIME  ?= 20s
# `make test` (and so CI) runs each fuzz target for this many executions.
# A count, not a duration: with go1.26 a duration-bounded run can fail with a
# bare "context deadline exceeded" when the time runs out while a worker is
# busy (golang/go#75804), which says nothing about the code under test.
# 300000 executions take 15 to 20 seconds per target on a 2-core machine.
FUZZSMOKE ?= 300000x
# Targets whose executions are expensive get their own count in `make
# test`: FuzzOpen opens a bbolt file per execution (about 800 a second).
FUZZSMOKE_FuzzOpen ?= 20000x
export FUZZSMOKE_FuzzOpen

.PHONY: all test test/race test/386 runs386 test/unit vet lint verify bench fuzz fuzz/smoke fuzz/run envtest-assets

all: verify test

## test: vet, every test under the race detector, the core on 32-bit, a short fuzz run of every target.
test: vet test/race test/386 fuzz/smoke

vet:
	@for m in $(MODULES); do echo "== vet $$m"; (cd $$m && $(GO) vet ./...) || exit 1; done

test/race:
	@for m in $(MODULES); do echo "== test $$m"; (cd $$m && $(GO) test -race -count=1 ./...) || exit 1; done

# The core packages also run as 32-bit code: lengths and counters in the
# codec must not overflow there. GOARCH=386 runs natively on amd64 kernels
# that run 32-bit programs; elsewhere the tests run as 32-bit ARM code under
# qemu-arm (Debian's qemu-user, which .ci/run installs when needed).
CORE32    := ./stepflow ./combinators ./codec
test/386:
	@if $(MAKE) --no-print-directory runs386 >/dev/null 2>&1; then \
	  echo "== test 32-bit core (386)"; GOARCH=386 $(GO) test -count=1 $(CORE32); \
	elif command -v qemu-arm >/dev/null 2>&1; then \
	  echo "== test 32-bit core (arm under qemu-arm)"; GOARCH=arm GOARM=7 $(GO) test -exec qemu-arm -count=1 $(CORE32); \
	else \
	  echo "== test 32-bit core SKIPPED: this kernel does not run 386 programs and qemu-arm is missing (apt-get install qemu-user)"; \
	  if [ -n "$$CI" ]; then exit 1; fi; \
	fi

# runs386 succeeds when this machine runs 386 programs.
runs386:
	@GOARCH=386 $(GO) test -count=1 -run '^TestDecodeErrorsAreTyped$$' ./codec

test/unit:
	@for m in $(MODULES); do (cd $$m && $(GO) test -count=1 ./...) || exit 1; done

## lint: formatting and vet.
lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## verify: lint plus go.mod/go.sum tidiness.
verify: lint
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy -diff) || { echo "go mod tidy needed in $$m"; exit 1; }; done

## bench: benchmarks with allocation counts; compare runs with benchstat.
bench:
	@for m in $(MODULES); do (cd $$m && $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count $(COUNT) ./...) || exit 1; done

## fuzz: run every fuzz target for FUZZTIME each.
fuzz:
	@$(MAKE) --no-print-directory fuzz/run T=$(FUZZTIME)

fuzz/smoke:
	@$(MAKE) --no-print-directory fuzz/run T=$(FUZZSMOKE)

fuzz/run:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    n="$(T)"; if [ "$(T)" = "$(FUZZSMOKE)" ]; then eval "n=\$${FUZZSMOKE_$$t:-$(T)}"; fi; \
	    echo "== fuzz $$pkg $$t ($$n)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $$n $$pkg || exit 1; \
	  done; \
	done

## envtest-assets: build etcd and kube-apiserver for the envtest tests (once per machine; prints KUBEBUILDER_ASSETS).
envtest-assets:
	@bash .ci/envtest-assets.sh
