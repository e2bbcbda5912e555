#!/bin/sh
# Peak RSS of ferry's send and receive pipelines moving one path holding a single
# 1 GB file (issue 4: <= 128 MB with the default codecs), each direction and codec
# in a process of its own (ru_maxrss is per process). Uses test_transfer's disabled
# cases peak_rss_send / peak_rss_receive (real test host, fresh stores).
#   bench/transfer_rss.sh [BUILD_DIR] [SIZE_MB] [CODECS]
# e.g. bench/transfer_rss.sh /tmp/build-xfer 1024 "none zstd:1 zstd:3"
set -eu
build=${1:-build}
mb=${2:-1024}
codecs=${3:-"none zstd:1 zstd:3"}
for dir in send receive; do
    for codec in $codecs; do
        FERRY_RSS_MB=$mb FERRY_RSS_CODEC=$codec /usr/bin/time -f "$dir $codec: /usr/bin/time max RSS %M KB, %e s" \
            "$build/test_transfer" --run_test=peak_rss_$dir --log_level=message 2>&1 |
            grep -E "peak RSS|max RSS|error" || true
    done
done
