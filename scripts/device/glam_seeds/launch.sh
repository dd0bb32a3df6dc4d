# last chunk call: join, convert once, launch the five runs detached, then wait & package
cp .gpu/p4 /tmp/ 2>/dev/null; cd /tmp && cat p0 p1 p2 p3 p4 > gemma-3-270m-q4_k_m.gguf && sha256sum gemma-3-270m-q4_k_m.gguf | grep -q a5fd3b62230aa5ec || { echo BAD SHA; exit 1; }
cd - >/dev/null; export PYTHONPATH=/tmp/site:$PWD/src M=/tmp/gemma-3-270m-q4_k_m.gguf
time python3 .gpu/convert.py $M /tmp || exit 1
mkdir -p /tmp/runs; cp .gpu/glam_one.py .gpu/wait.sh /tmp/  # from scripts/device/glam_seeds/, copied to .gpu/ with the parts
for spec in "1 pretrained cpu-s1" "2 pretrained cpu-s2" "0 random cpu-random-init-s0" "1 random cpu-random-init-s1" "2 random cpu-random-init-s2"; do
  set -- $spec
  OMP_NUM_THREADS=3 setsid nohup python3 /tmp/glam_one.py $1 $2 /tmp/runs/$3 $M > /tmp/runs/$3.log 2>&1 < /dev/null &
done
sleep 5; bash /tmp/wait.sh ${WAIT:-480}
