# greymilter: `make run` starts it with its defaults, `make test` runs every test.
GO      ?= go
BIN     := bin
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Fuzz targets run briefly as part of `make test`: PACKAGE:TARGET.
FUZZ_TARGETS ?= ./lists:FuzzParse ./policyd:FuzzReader
# A count, not a duration: a duration races Go 1.26's fuzz coordinator at its
# deadline and fails with "context deadline exceeded" on a busy machine
# (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 30000x

# make install PREFIX=/usr/local DESTDIR=/tmp/stage: binary, man page,
# systemd unit and example configuration.
PREFIX  ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
# The Debian package: a version dpkg accepts (it must start with a digit)
# from the last tag, or 0.0 before the first, and the commit.
DEB_VERSION ?= $(shell v=$$(git describe --tags --abbrev=0 2>/dev/null | sed 's/^v//'); echo "$${v:-0.0}+git$$(git rev-list --count HEAD 2>/dev/null || echo 0).$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
DEB_ARCH ?= $(shell $(GO) env GOARCH)
DEB_DIR ?= .
NFPM    ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0

.PHONY: all build run test e2e soak fuzz bench lint clean generate install deb

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

# The long soak: SOAK_S seconds (600) of mixed load with SIGHUPs; fails when
# memory, goroutines or open files keep growing. `test` runs a 30 s form.
SOAK_S ?= 600
soak:
	SOAK_S=$(SOAK_S) $(GO) test -count=1 -v -timeout $$(( $(SOAK_S) + 300 ))s -run '^TestSoak$$' ./test/soak/

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

# Rewrites the files generated from the flag definitions: the example
# configuration and the man page (a test fails when they are out of date).
generate:
	$(GO) generate ./cmd/greymilter

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(SYSCONFDIR)/greymilter $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BIN)/greymilter $(DESTDIR)$(PREFIX)/bin/greymilter
	install -m 0644 contrib/greymilter.8 $(DESTDIR)$(PREFIX)/share/man/man8/greymilter.8
	sed 's|/usr/bin/greymilter|$(PREFIX)/bin/greymilter|g; s|/etc/greymilter/|$(SYSCONFDIR)/greymilter/|g' contrib/greymilter.service >$(DESTDIR)$(UNITDIR)/greymilter.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/greymilter.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/greymilter/greymilter.conf ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/greymilter/greymilter.conf"; \
	else \
		install -m 0644 contrib/greymilter.conf $(DESTDIR)$(SYSCONFDIR)/greymilter/greymilter.conf; \
	fi

# greymilter_VERSION_ARCH.deb in DEB_DIR (default: here), built with nfpm (see
# nfpm.yaml); install it with apt install ./greymilter_*.deb.
deb: build
	mkdir -p build
	gzip -9n <contrib/greymilter.8 >build/greymilter.8.gz
	GREYMILTER_VERSION='$(DEB_VERSION)' GREYMILTER_ARCH='$(DEB_ARCH)' $(NFPM) package --config nfpm.yaml --packager deb --target $(DEB_DIR)

clean:
	rm -rf $(BIN) build greymilter_*.deb
