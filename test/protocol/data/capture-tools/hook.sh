#!/bin/sh
# Records what the daemon sends to a build hook. CAPTURE_DIR and CAPTURE_MODE
# (decline|accept) come from the environment.
dir=${CAPTURE_DIR:?}
printf '%s\n' "$0" "$@" > "$dir/argv"
exec 3<&0
cat <&3 > "$dir/stdin.bin" &
sleep 1
if [ "${CAPTURE_MODE:-decline}" = accept ]; then
  printf '# accept\nssh://recorder\n' >&2
  wait
  exit 1
else
  printf '# decline\n' >&2
  wait
fi
