# Snapback build targets. `make test` is the command CI runs (see README).
GO        ?= go
PKGS      := ./...
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS   := -X main.version=$(VERSION)

.PHONY: build test lint bench demo fuzz package clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/snapback .

# The whole suite with real parts: simulator over real sockets, idevicebackup2, SQLite, D-Bus.
test:
	scripts/test.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	# 32-bit (armhf NAS boxes, Raspberry Pi OS): constants and sizes that overflow an int.
	GOARCH=386 $(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)
	# Import direction (DESIGN §2): a Go test over `go list -deps -json`, which also plants
	# forbidden imports in a copy of the module to prove each rule can fail.
	$(GO) test -count=1 ./internal/archtest/

# Benchmarks print their figures as tables (see each package's bench_test.go).
bench:
	scripts/bench.sh

# Runs the whole app against the simulated iPhone; no device needed.
demo: build
	scripts/demo.sh

# Short fuzzing pass over every fuzz target (the committed seeds always run in `make test`).
fuzz:
	scripts/fuzz.sh

# Builds the .deb and cross-builds what this machine can (see packaging/).
package:
	scripts/package.sh

clean:
	rm -rf bin
