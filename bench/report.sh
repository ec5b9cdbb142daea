#!/usr/bin/env bash
# Runs every benchmark program side by side (5 repetitions, medians) and writes
# <out>/results.md (tables), <out>/*.json (raw Google Benchmark output) and
# <out>/pool_throughput.png (gnuplot).
#
#   bench/report.sh <directory with the benchmark binaries> <output directory>
set -euo pipefail

bin_dir="$1"
out_dir="$2"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$out_dir"
repetitions="${CTXPOOL_BENCH_REPETITIONS:-5}"

programs=()
for name in context_bench pool_bench diagnostics_bench; do
  if [[ -x $bin_dir/$name ]]; then
    programs+=("$name")
    echo "==> $name ($repetitions repetitions)" >&2
    "$bin_dir/$name" --benchmark_repetitions="$repetitions" \
      --benchmark_report_aggregates_only=true \
      --benchmark_out="$out_dir/$name.json" --benchmark_out_format=json >&2
  fi
done

python3 "$here/report.py" "$out_dir" "${programs[@]}"
if command -v gnuplot >/dev/null && [[ -s $out_dir/pool_throughput.dat ]]; then
  gnuplot -e "datafile='$out_dir/pool_throughput.dat'; outfile='$out_dir/pool_throughput.png'" \
    "$here/pool_throughput.gp"
  echo "wrote $out_dir/pool_throughput.png" >&2
fi
echo "wrote $out_dir/results.md" >&2
