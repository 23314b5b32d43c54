# The README's two commands: `make run` and `make test`. Each installs what it needs first.
NPM ?= npm
STAMP := node_modules/.install-stamp

.PHONY: all install build run test typecheck lint-deps vitest bench soak clean

all: build

$(STAMP): package.json package-lock.json
	$(NPM) install --no-audit --no-fund
	@touch $(STAMP)

install: $(STAMP)

build: $(STAMP)
	$(NPM) run --silent build

# The main job: the scenario catalogue on the built-in `virt` machine.
run: build
	./bin/iommu-sim run

typecheck: $(STAMP)
	$(NPM) run --silent typecheck

lint-deps: $(STAMP)
	$(NPM) run --silent lint:deps

vitest: $(STAMP)
	$(NPM) run --silent test

test: typecheck lint-deps vitest

bench: $(STAMP)
	$(NPM) run --silent bench

soak: $(STAMP)
	npx vitest run --config vitest.soak.config.ts

clean:
	rm -rf dist node_modules
