# The README's two commands: `make run` and `make test`. Each installs what it needs first, exactly
# as the committed lock file says (`npm ci`: never rewrites package-lock.json).
NPM ?= npm
STAMP := node_modules/.install-stamp

.PHONY: all install build types docs run test typecheck lint-deps lint porting-map vitest bench soak dtb-sweep pack clean

all: build

$(STAMP): package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $(STAMP)

install: $(STAMP)

# Transpile only (esbuild, under a second); type-checking is `make typecheck`.
build: $(STAMP)
	$(NPM) run --silent build

# The .d.ts files the package ships (tsc).
types: $(STAMP)
	$(NPM) run --silent build:types

# The API reference (TypeDoc) in docs/api.
docs: $(STAMP)
	$(NPM) run --silent docs

# The main job: the scenario catalogue on the built-in `virt` machine.
run: build
	./bin/iommu-sim run

typecheck: $(STAMP)
	$(NPM) run --silent typecheck

lint-deps: $(STAMP)
	$(NPM) run --silent lint:deps

# typescript-eslint as a gate: no floating promises, no promise handed where none is awaited.
lint: $(STAMP)
	$(NPM) run --silent lint

# Checks every `// kernel: fn() [file.c]` line and writes PORTING.md (not tracked).
porting-map:
	node scripts/porting-map.mjs

vitest: $(STAMP)
	$(NPM) run --silent test

test: typecheck lint-deps lint porting-map vitest

bench: $(STAMP)
	$(NPM) run --silent bench

soak: $(STAMP)
	npx vitest run --config vitest.soak.config.ts

# The package tarball (runtime code, type declarations, README).
pack: $(STAMP)
	$(NPM) pack

# Every arm64 DTB of Debian's kernel package, booted and checked against dtc (needs root for apt).
dtb-sweep: $(STAMP)
	scripts/fetch-debian-dtbs.sh .cache/dtbs
	DTB_SWEEP_DIR=$(CURDIR)/.cache/dtbs npx vitest run --config vitest.soak.config.ts test/scenarios/dtb-sweep.soak.test.ts

clean:
	rm -rf dist node_modules docs/api
