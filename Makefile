# greymilter: `make run` starts it with its defaults, `make test` runs every test.
GO      ?= go
BIN     := bin
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Fuzz targets run briefly as part of `make test`: PACKAGE:TARGET.
FUZZ_TARGETS ?= ./lists:FuzzParse ./policyd:FuzzReader
FUZZTIME ?= 10s

.PHONY: all build run test e2e fuzz bench lint clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/greymilter ./cmd/greymilter

# Runs greymilter on inet:127.0.0.1:10029 with a SQLite file in this
# directory. --allow-root: a first trial is often run as root on a fresh
# machine; a real installation uses --user (see README).
run: build
	$(BIN)/greymilter --db greymilter.db --allow-root

test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...
	$(MAKE) fuzz

# End-to-end tests only (part of `test`): the real greymilter behind private
# Postfix instances; needs root, postfix, swaks and miltertest (see .ci/run).
e2e:
	$(GO) test -count=1 ./test/...

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

bench:
	bash bench/run.sh

lint:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest ./...

clean:
	rm -rf $(BIN)
