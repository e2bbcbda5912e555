#!/bin/sh
exec 3<&0
cat <&3 > /dev/null &
sleep 0.5
cat "$LINES" >&2
echo "ferry build log line" >&4
sleep 0.5
exit 100
