# wait up to $1 s for the runs, report progress, package what is finished into $OUT
end=$(( $(date +%s) + $1 ))
while [ $(date +%s) -lt $end ] && [ $(ls /tmp/runs/*/done.json 2>/dev/null | wc -l) -lt 5 ]; do sleep 10; done
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
for r in /tmp/runs/*/; do n=$(basename $r); echo "$n: $(tail -1 $r/progress.csv | cut -d, -f1-5) done=$([ -f $r/done.json ] && echo yes)"; tail -2 /tmp/runs/$n.log; done
cd /tmp/runs && for r in */; do n=${r%/}; tar czf $OUT/$n.tgz --exclude=checkpoints --exclude=policy $n $n.log; done
ls -la $OUT
