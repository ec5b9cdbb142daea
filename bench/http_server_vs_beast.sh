#!/usr/bin/env bash
# http_server_vs_beast.sh: the http_server sample against Boost.Beast's own
# http_server_async example, side by side in one run, under wrk.
#
#   bench/http_server_vs_beast.sh <http_server> <http_server_async> [rounds] [seconds] [paired]
#
# <http_server_async> is Beast's example/http/server/async/http_server_async.cpp
# built by you (it is not part of this repository), e.g.
#   g++ -std=c++20 -O2 -DNDEBUG http_server_async.cpp -o http_server_async -pthread
# It serves a file; the script gives it a 33-byte one, the size of the
# sample's /hello answer. Both servers run 2 threads on 127.0.0.1; wrk runs 2
# threads and 100 connections. The rounds alternate Beast, the sample with
# its request log, the sample without it, so that a machine whose load
# changes affects all three alike; the ratios are per round, and the median
# of the rounds is the result. Besides requests per second, each server's CPU
# time per request (from /proc) is printed: it is what a busy shared machine
# disturbs least. With `paired` as the fifth argument, each round loads
# Beast and one sample server at the same time (two wrk runs side by side),
# so that both meet the same load from the rest of the machine -- the fairer
# comparison on a shared, busy machine. Needs wrk (Debian: wrk). Nothing
# here is a test; no threshold is checked.
set -euo pipefail

sample="${1:?usage: $0 <http_server> <http_server_async> [rounds] [seconds]}"
beast="${2:?usage: $0 <http_server> <http_server_async> [rounds] [seconds]}"
rounds="${3:-5}"
seconds="${4:-4}"
paired="${5:-}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

printf 'hello from request srv-1-1234567\n' >"$work/hello"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

beast_port="$(free_port)"
"$beast" 127.0.0.1 "$beast_port" "$work" 2 >/dev/null 2>&1 &
pids+=($!)
beast_pid=$!
log_port="$(free_port)"
"$sample" --port "$log_port" --threads 2 >/dev/null 2>"$work/log.err" &
pids+=($!)
log_pid=$!
quiet_port="$(free_port)"
"$sample" --port "$quiet_port" --threads 2 --no-request-log >/dev/null 2>"$work/quiet.err" &
pids+=($!)
quiet_pid=$!
sleep 1

# cpu_ticks <pid>: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

# load <port> <pid>: prints "<requests per second> <CPU microseconds per request>".
load() {
  local before after out reqs rps
  before="$(cpu_ticks "$2")"
  out="$(wrk -t2 -c100 -d"${seconds}s" "http://127.0.0.1:$1/hello")"
  after="$(cpu_ticks "$2")"
  rps="$(awk '/Requests\/sec/ { print $2 }' <<<"$out")"
  reqs="$(awk '/requests in/ { print $1 }' <<<"$out")"
  awk -v r="$rps" -v n="$reqs" -v t="$((after - before))" -v hz="$hz" \
    'BEGIN { printf "%.0f %.1f\n", r, (t / hz) * 1e6 / n }'
}

printf '%-6s %12s %12s %12s %10s %10s   %s\n' round "beast req/s" "log req/s" "nolog req/s" \
  "log/beast" "nolog/b" "CPU us/request: beast log nolog"
ratios_log=()
ratios_quiet=()
for ((r = 1; r <= rounds; ++r)); do
  if [[ $paired == paired ]]; then
    load "$beast_port" "$beast_pid" >"$work/b1" &
    one=$!
    load "$log_port" "$log_pid" >"$work/l" &
    wait "$one" $!
    load "$beast_port" "$beast_pid" >"$work/b2" &
    one=$!
    load "$quiet_port" "$quiet_pid" >"$work/q" &
    wait "$one" $!
    read -r b1_rps b_cpu <"$work/b1"
    read -r b2_rps _ <"$work/b2"
    read -r l_rps l_cpu <"$work/l"
    read -r q_rps q_cpu <"$work/q"
    b_rps="$b1_rps/$b2_rps"
  else
    read -r b1_rps b_cpu < <(load "$beast_port" "$beast_pid")
    b2_rps="$b1_rps"
    b_rps="$b1_rps"
    read -r l_rps l_cpu < <(load "$log_port" "$log_pid")
    read -r q_rps q_cpu < <(load "$quiet_port" "$quiet_pid")
  fi
  rl="$(awk -v a="$l_rps" -v b="$b1_rps" 'BEGIN { printf "%.3f", a / b }')"
  rq="$(awk -v a="$q_rps" -v b="$b2_rps" 'BEGIN { printf "%.3f", a / b }')"
  ratios_log+=("$rl")
  ratios_quiet+=("$rq")
  printf '%-6s %12s %12s %12s %10s %10s   %s %s %s\n' "$r" "$b_rps" "$l_rps" "$q_rps" "$rl" "$rq" \
    "$b_cpu" "$l_cpu" "$q_cpu"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "median ratio to Beast's http_server_async: with request log $(median "${ratios_log[@]}"), without $(median "${ratios_quiet[@]}")"
