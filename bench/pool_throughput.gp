# Grouped bars: throughput (million tasks/s, log scale) of ctxpool and its
# peers on workloads W1-W6, 2 workers each, one run (medians of 5).
# gnuplot -e "datafile='...'; outfile='...'" pool_throughput.gp
set terminal pngcairo size 1280,560 font "sans,10"
set output outfile
set title "Pool throughput by workload, 2 workers, medians of one run (higher is better; the submitter waits on a latch unless marked yield)" noenhanced
set ylabel "million tasks / second (log scale)"
set logscale y
set grid ytics
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top vertical noenhanced
set xtics noenhanced
columns = 9
plot for [i=2:columns] datafile using i:xtic(1) title columnheader(i)
