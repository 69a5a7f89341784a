#!/usr/bin/env bash
# Kills the test cluster's processes when their owner (the test runner) is gone, however it ended.
# $1: owner pid; $2: file with one process-group leader pid per line (removed on a clean stop).
owner="$1"; pids="$2"
while kill -0 "$owner" 2>/dev/null && [ -f "$pids" ]; do sleep 1; done
[ -f "$pids" ] || exit 0
while read -r pid; do [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null; done <"$pids"
sleep 3
while read -r pid; do [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null; done <"$pids"
rm -f "$pids"
