# A thin wrapper over CMake: the targets of the outside contract (docs/ and
# ../shared/reference/cli-contract.md). Three build trees:
#   build/       the program and every test (RelWithDebInfo)
#   build-san/   the pure layers and their tests under ASan + UBSan
#   build-fuzz/  libFuzzer targets (clang); `make test` replays their corpora
JOBS  ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all build deps test test-unit test-san test-fuzz demo install fuzz bench clean

all: build

build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	$(CMAKE) --build build -j $(JOBS)

deps:
	.ci/install-deps

build-san:
	$(CMAKE) -S . -B build-san -DFERRY_PURE_ONLY=ON -DFERRY_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	$(CMAKE) --build build-san -j $(JOBS)

build-fuzz:
	CXX=clang++ $(CMAKE) -S . -B build-fuzz -DFERRY_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	$(CMAKE) --build build-fuzz -j $(JOBS)

test-san: build-san
	cd build-san && ctest -L pure --output-on-failure

test-fuzz: build-fuzz
	test/fuzz/replay build-fuzz test/fuzz/corpus

test-unit: build
	cd build && ctest --output-on-failure

# Sanitizers and fuzz replay first (fast), then every test of the real build last,
# so ctest's summary is the closing line.
test: deps
	$(MAKE) build build-san build-fuzz
	$(MAKE) test-san test-fuzz
	$(MAKE) test-unit

demo: deps build
	bench/demo

install: build
	$(CMAKE) --install build

fuzz: build-fuzz
	test/fuzz/run-open-ended build-fuzz test/fuzz/corpus

bench: build
	build/ferry bench --local-host --synthetic 256M:200 --codec none,zstd:1,zstd:3 --runs 3

clean:
	rm -rf build build-san build-fuzz
