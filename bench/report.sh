#!/usr/bin/env bash
# Runs every benchmark program side by side (5 repetitions, interleaved,
# medians) and writes <out>/results.md (ratio tables and every median),
# <out>/*.json (raw Google Benchmark output), <out>/pool_throughput.png
# (gnuplot), and the tables of the README's Performance section (between the
# bench/report.py markers).
#
#   bench/report.sh <directory with the benchmark binaries> <output directory>
#
# CTXPOOL_BENCH_REPETITIONS (default 5) and CTXPOOL_BENCH_MIN_TIME (seconds per
# pool benchmark and repetition, default 0.2) shorten a smoke run;
# CTXPOOL_BENCH_README names the README to update ("" to leave it alone).
set -euo pipefail

bin_dir="$1"
out_dir="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readme="${CTXPOOL_BENCH_README-$here/../README.md}"
mkdir -p "$out_dir"
repetitions="${CTXPOOL_BENCH_REPETITIONS:-5}"

# The known programs first, in this order, then any other *_bench built.
programs=()
for name in context_bench pool_bench pool_memory_bench diagnostics_bench; do
  [[ -x $bin_dir/$name ]] && programs+=("$name")
done
for path in "$bin_dir"/*_bench; do
  name="$(basename "$path")"
  [[ -x $path && ! " ${programs[*]} " =~ " $name " ]] && programs+=("$name")
done

# Repetitions run interleaved in random order: the host's speed drifts over
# a run (docs/performance-history.md: a VM's peers once ran up to 3 times
# faster a minute later), and a ratio of two rows measured a minute apart
# compares two hosts. Interleaved,
# every row's median samples the same mix of moments.
for name in "${programs[@]}"; do
  echo "==> $name ($repetitions repetitions, interleaved)" >&2
  "$bin_dir/$name" --benchmark_repetitions="$repetitions" \
    --benchmark_enable_random_interleaving=true \
    --benchmark_report_aggregates_only=true \
    --benchmark_out="$out_dir/$name.json" --benchmark_out_format=json >&2
done

readme_args=()
[[ -n $readme && -f $readme ]] && readme_args=(--readme "$readme")
python3 "$here/report.py" "$out_dir" "${readme_args[@]}" "${programs[@]}"
if command -v gnuplot >/dev/null && [[ -s $out_dir/pool_throughput.dat ]]; then
  gnuplot -e "datafile='$out_dir/pool_throughput.dat'; outfile='$out_dir/pool_throughput.png'" \
    "$here/pool_throughput.gp"
  echo "wrote $out_dir/pool_throughput.png" >&2
else
  echo "gnuplot missing: $out_dir/pool_throughput.png not redrawn" >&2
fi
echo "wrote $out_dir/results.md" >&2
