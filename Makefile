# A thin wrapper over CMake: the targets of the outside contract (docs/ and
# ../shared/reference/cli-contract.md). Two build trees:
#   build/       the program and every test (g++, RelWithDebInfo)
#   build-check/ clang with ASan + UBSan: the pure layers' tests and the libFuzzer
#                targets (one tree for both keeps `make test` within its budget)
MAKEFLAGS += --no-print-directory
JOBS  ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all build build-check deps test test-unit test-san test-fuzz demo install fuzz bench clean

all: build

build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	$(CMAKE) --build build -j $(JOBS)

deps:
	.ci/install-deps

build-check:
	CXX=clang++ $(CMAKE) -S . -B build-check -DFERRY_FUZZ=ON -DFERRY_PURE_ONLY=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	$(CMAKE) --build build-check -j $(JOBS)

test-san: build-check
	cd build-check && ctest -L pure --output-on-failure

test-fuzz: build-check
	test/fuzz/replay build-check test/fuzz/corpus

test-unit: build
	cd build && ctest --output-on-failure

# Sanitizers and fuzz replay first (fast), then every test of the real build last,
# so ctest's summary is the closing line.
test: deps
	$(MAKE) build build-check
	$(MAKE) test-san test-fuzz
	$(MAKE) test-unit

demo: deps build
	bench/demo

install: build
	$(CMAKE) --install build

fuzz: build-check
	test/fuzz/run-open-ended build-check test/fuzz/corpus

bench: build
	build/ferry bench --local-host --synthetic 256M:200 --codec none,zstd:1,zstd:3 --runs 3

clean:
	rm -rf build build-check
