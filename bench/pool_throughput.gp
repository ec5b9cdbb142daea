# Bar chart of empty-task throughput (million tasks/s) of ctxpool and its peers.
# gnuplot -e "datafile='...'; outfile='...'" pool_throughput.gp
set terminal pngcairo size 1000,520 font "sans,10"
set output outfile
set title "Empty-task throughput, 2 workers, fed from one outside thread (median of 5)"
set ylabel "million tasks / second (higher is better)"
set style fill solid 0.8 border -1
set boxwidth 0.6
set grid ytics
set yrange [0:*]
set xtics rotate by -25 noenhanced
unset key
plot datafile using 0:2:xtic(1) with boxes lc rgb "#3b75af", \
     '' using 0:2:(sprintf("%.2f", $2)) with labels offset 0,0.7 notitle
