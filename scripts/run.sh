#!/usr/bin/env bash
# ctxpool's one entry point: installs what is missing, builds, runs.
#
#   scripts/run.sh samples   build the sample programs, tell token_leak's story
#                            (the bug, the wipe, the detection, the fix), run
#                            every sample's checks
#   scripts/run.sh tests     the whole test suite: Release build (tests, samples,
#                            consumer projects), then ASan+UBSan, TSan and
#                            clang-16 builds of the test suites, and the
#                            clang-format check
#   scripts/run.sh bench     build and run every benchmark, regenerate
#                            bench/results/ (table and plot)
#   scripts/run.sh deps      only install the Debian packages
#
# Needs Debian 12 and root (or sudo) for apt-get; packages are installed only
# when missing (the list below: compilers, Boost, fmt, test frameworks, the
# benchmark peers, and elfutils + capstone for plain thread_local detection).
# The builds are CMakePresets.json's configure presets (release, samples,
# bench, asan, tsan, clang), so `cmake --preset asan` gives the same build by
# hand; their trees go to ./build/<preset> (override the ./build with
# CTXPOOL_BUILD_ROOT).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_root="${CTXPOOL_BUILD_ROOT:-$root/build}"
jobs="${CTXPOOL_JOBS:-$(nproc)}"
packages=(g++ cmake make libboost1.81-dev libfmt-dev doctest-dev libbenchmark-dev libgtest-dev libtbb-dev
  libdw-dev libelf-dev libcapstone-dev clang-16 curl)
packages+=(libabsl-dev libprotobuf-dev)  # tests/diagnostics: common libraries' thread_locals stay clean
packages+=(libboost-json1.81-dev libboost-url1.81-dev)  # http_server sample: POST /trace-test
packages+=(python3)  # http_server sample: the W3C trace-context conformance driver
command -v npm >/dev/null || packages+=(nodejs npm)  # the OpenTelemetry JS interop test (npm ci)
packages+=(libspdlog-dev)  # ctxpool::log_spdlog and its tests
packages+=(libboost-log1.81-dev)  # ctxpool::log_boost_log and its tests
packages+=(meson pkg-config)  # consumer/pkgconfig: a Meson and a make project using ctxpool.pc
packages+=(patch)  # tests/diagnostics/example_kind: the new-kind example is a patch
packages+=(libgrpc++-dev)  # tests/propagation: gRPC metadata as a carrier, over a real call
packages+=(libclang-rt-16-dev)  # libFuzzer, for the propagation parsers' fuzz run (clang build)
packages+=(clang-format-16 git)  # the formatting check: pinned, other versions break lines differently

log() { printf '\n==> %s\n' "$*"; }

install_deps() {
  local wanted=("$@") missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    return
  fi
  log "installing: ${missing[*]}"
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# configure <preset> <dir>: configures <dir> as CMakePresets.json's <preset>
# says (cmake reads the presets of the current directory, hence the cd).
configure() {
  local preset="$1" dir="$2"
  (cd "$root" && cmake --preset "$preset" -B "$dir" >/dev/null)
}

# build_with_progress <dir> [cmake --build args...]: builds quietly, with the
# build's output in <dir>/build.log, but says every 15 seconds how far it got
# and how long it has taken (the samples take minutes on a busy 2-core
# machine, and a silent build looks hung); on failure, shows the log's end.
build_with_progress() {
  local dir="$1"
  shift
  local build_log="$dir/build.log" start=$SECONDS pid status=0
  cmake --build "$dir" -j "$jobs" "$@" >"$build_log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for ((tick = 0; tick < 15; ++tick)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    kill -0 "$pid" 2>/dev/null || break
    local step
    step="$(grep -E '^\[ *[0-9]+%\]' "$build_log" | tail -1 |
      sed -E -e 's#^(\[ *[0-9]+%\]) (Building CXX object|Linking CXX [a-z ]*) ([^ ]*).*#\1 \3#' \
        -e 's#CMakeFiles/[^/]*\.dir/##' -e 's#\.o$##' || true)"
    printf '    %dm%02ds  %s\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)) \
      "${step:-configuring the build}"
  done
  wait "$pid" || status=$?
  if ((status != 0)); then
    tail -n 60 "$build_log" >&2
    echo "    the build failed (exit status $status); its whole output: $build_log" >&2
    return "$status"
  fi
  printf '    built in %dm%02ds\n' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60))
}

# Totals over every ctest run of this invocation, for the closing line.
passed_total=0
failed_total=0
# Tests ctest skipped (a missing tool): ctest counts them as passed, so they
# are taken out of the passed total and named at the end instead.
skipped_names=()
# The failed tests, build by build, repeated at the very end: CI shows only a
# log's tail, and a failure early in a long log is otherwise lost there.
failed_names=()
# run_ctest <dir> [ctest args...]. (Not through the test presets: ctest
# 3.25 runs a preset's own binary directory whenever it exists, whatever
# --test-dir says; CMakePresets.json's test presets repeat what is passed here.)
run_ctest() {
  local dir="$1"
  shift
  local out status=0
  out="$(mktemp)"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$out" || status=$?
  local line
  line="$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$out" | tail -1 || true)"
  if [[ -n $line ]]; then
    local failed total
    failed="$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+)/\1/' <<<"$line")"
    total="$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+)/\2/' <<<"$line")"
    passed_total=$((passed_total + total - failed))
    failed_total=$((failed_total + failed))
    local name
    while IFS= read -r name; do
      failed_names+=("$(basename "$dir"): $name")
    done < <(sed -n '/^The following tests FAILED:/,/^$/{/^[[:space:]]*[0-9]\+ - /p}' "$out" |
      sed -E 's/^[[:space:]]*//')
    while IFS= read -r name; do
      skipped_names+=("$(basename "$dir"): $name")
      passed_total=$((passed_total - 1))
    done < <(sed -n '/^The following tests did not run:/,/^$/{/ (Skipped)$/p}' "$out" |
      sed -E 's/^[[:space:]]*//')
  else
    failed_total=$((failed_total + 1))
    failed_names+=("$(basename "$dir"): ctest printed no summary")
  fi
  rm -f "$out"
  return "$status"
}

# story_step <title> <CTXPOOL_DIAGNOSTICS value> <expected exit status> <token_leak args...>:
# one step of the samples' story. Shows the command, its output indented
# (source paths relative to the checkout, long function signatures cut, of the
# request lines only the anonymous ones) and its exit status; returns 1 when
# the status is not the expected one, so the story cannot pass while not holding.
story_step() {
  local title="$1" diagnostics="$2" expected="$3"
  shift 3
  log "$title"
  local shown="token_leak $*"
  if [[ $diagnostics != off ]]; then shown="CTXPOOL_DIAGNOSTICS=$diagnostics $shown"; fi
  echo "    \$ $shown"
  local out err status=0
  err="$(mktemp)"
  # stdout, then stderr (the findings): in a pipe stdout is buffered, so mixed
  # they would come out in the wrong order.
  out="$(CTXPOOL_DIAGNOSTICS="$diagnostics" "$story_program" "$@" 2>"$err")" || status=$?
  out+=$'\n'"$(cat "$err")"
  rm -f "$err"
  sed -E -e "s|$root/||g" -e 's/^( +(at|submitted at|written at) [^ ]+) in .*/\1/' <<<"$out" |
    awk 'NF && (!/^  request / || $3 == "anonymous")' | sed 's/^/    /'
  echo "    (exit status $status)"
  if [[ $status -ne $expected ]]; then
    echo "    UNEXPECTED: exit status $status, expected $expected" >&2
    return 1
  fi
}

cmd_samples() {
  install_deps "${packages[@]}"
  local dir="$build_root/release"
  log "building the samples (Release) in $dir"
  configure samples "$dir"
  build_with_progress "$dir"
  local story_program="$dir/samples/token_leak" status=0
  story_step "1. The bug: a hand-written std::thread pool, the auth token in a plain thread_local" \
    off 0 --naive || status=1
  story_step "2. The wipe: the same code on ctxpool::thread_pool, the token in a thread_local_var" \
    off 0 --pool || status=1
  story_step "3. The detection: the wipe hides the bug; CI finds the code that has it" \
    residue 66 --pool || status=1
  story_step "4. The fix: the token in a context_var, set by the code that submits the request" \
    residue 0 --fixed || status=1

  log "every sample's own checks (ctest -L samples; samples/README.md says what each shows)"
  local out
  out="$(mktemp)"
  if ctest --test-dir "$dir" -L samples -j "$jobs" --output-on-failure >"$out" 2>&1; then
    grep -E '^[0-9]+% tests passed' "$out" | sed 's/^/    /'
  else
    cat "$out"
    status=1
  fi
  rm -f "$out"

  log "the sample programs are in $dir/samples/ (run any of them; samples/README.md has the commands):"
  find "$dir/samples" -maxdepth 1 -type f -executable -printf '%f\n' | sort | paste -sd ' ' |
    fold -s -w 76 | sed 's/^/    /'
  return "$status"
}

# check_format: clang-format-16 --dry-run --Werror over the tracked C++
# sources (.clang-format); counts as one test, failed when a file is not clean.
check_format() {
  if ! git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "    not a git checkout: the formatting check needs git ls-files; skipped"
    return 0
  fi
  local files=()
  mapfile -t files < <(cd "$root" && git ls-files | grep -E '\.(cpp|hpp|h)$')
  if (cd "$root" && clang-format-16 --dry-run --Werror "${files[@]}"); then
    echo "    ${#files[@]} files clean"
    passed_total=$((passed_total + 1))
  else
    echo "    not clean: clang-format-16 -i <file> formats a file" >&2
    failed_total=$((failed_total + 1))
    return 1
  fi
}

cmd_tests() {
  install_deps "${packages[@]}"
  local status=0

  log "clang-format-16 check of the tracked C++ sources"
  check_format || status=1

  local rel="$build_root/release"
  log "Release build: library, tests, samples, benchmarks (compiled, not run)"
  configure release "$rel"
  cmake --build "$rel" -j "$jobs"
  log "Release: tests, samples and consumer projects"
  run_ctest "$rel" || status=1

  # The sanitizer builds compile only the test suites, at -O1, to stay fast.
  local asan="$build_root/asan"
  log "ASan+UBSan build of the test suites"
  configure asan "$asan"
  cmake --build "$asan" -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    run_ctest "$asan" || status=1

  local tsan="$build_root/tsan"
  log "TSan build of the test suites"
  configure tsan "$tsan"
  cmake --build "$tsan" -j "$jobs"
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest "$tsan" || status=1

  # clang-16 with Debian's libstdc++ (g++ 12's): the library and the test
  # suites, lean (-O1, no debug info), to keep ctxpool building with both;
  # with random preemption points in the pool's wake/park protocol
  # (executor/include/ctxpool/detail/interleave.hpp), and the tests that a
  # lost wake-up would hang run three times more (the clang-repeat test preset).
  local clang="$build_root/clang"
  log "clang-16 build of the library and the test suites (protocol interleaving injected)"
  configure clang "$clang"
  cmake --build "$clang" -j "$jobs"
  run_ctest "$clang" || status=1
  log "clang-16, interleaving injected: the wake-up, scheduler and lifecycle tests, 3 more runs"
  run_ctest "$clang" -L executor \
    -R 'executor/(a socket|a chain of short|completions from|a timer fires|a burst|a worker chosen|batches posted|wait|stop|submit racing|the destructor|join)' \
    --repeat until-fail:3 || status=1

  echo
  if ((${#skipped_names[@]} > 0)); then
    echo "skipped (each says why in its output above):"
    printf '    %s\n' "${skipped_names[@]}"
  fi
  if ((${#failed_names[@]} > 0)); then
    echo "failed:"
    printf '    %s\n' "${failed_names[@]}"
  fi
  echo "ctxpool: ${passed_total} passed, ${failed_total} failed, ${#skipped_names[@]} skipped"
  return "$status"
}

cmd_bench() {
  install_deps "${packages[@]}" gnuplot-nox python3
  local dir="$build_root/release"
  configure bench "$dir"
  cmake --build "$dir" -j "$jobs"
  "$root/bench/report.sh" "$dir/bench" "$root/bench/results"
}

case "${1:-}" in
  samples) cmd_samples ;;
  tests) cmd_tests ;;
  bench) cmd_bench ;;
  deps) install_deps "${packages[@]}" ;;
  *)
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
