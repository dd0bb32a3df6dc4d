# call 1: install wheels, check the software, keep chunk 0
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
cp .gpu/p0 /tmp/ && export PYTHONPATH=/tmp/site:$PWD/src
python3 -c "import sys, torch, transformers, peft, gguf, minigrid; print(sys.version, torch.__version__, transformers.__version__, peft.__version__, torch.cuda.get_device_name())"
python3 -c "import llmrl.recipes.glam; print('import ok')"
nproc; nvidia-smi --query-gpu=name,memory.used --format=csv
