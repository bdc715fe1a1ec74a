# One lent-GPU run: CUDA tests, extraction bench (nvjpeg and PIL pipelines) on small and large photos,
# the prepared-images store and the protocols on CUDA (bench/evaluation_speed.py; the SUN397-sized
# problem: goal under a minute), digits on CUDA. Each step has its own timeout so one slow step can't eat the others' figures.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv; python3 -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"; } | tee $OUT/gpu.txt
timeout 120 python3 -m pytest tests/workers/test_cuda.py tests/workers/test_metrics.py -q --tb=line -p no:cacheprovider 2>&1 | tail -15 | tee $OUT/pytest_cuda.txt
timeout 75 python3 bench/extract.py --device cuda --images 2000 --batch-size 128 --workers 14 2>&1 | tee $OUT/bench_cuda_small.txt
timeout 75 python3 bench/extract.py --device cuda --images 600 --batch-size 128 --workers 14 --photo-scale 5 --naive-images 100 2>&1 | tee $OUT/bench_cuda_large.txt
timeout 45 python3 -m workers evaluate --model efficientnet_lite0 --benchmark digits --device cuda --batch-size 256 --workers 8 --quiet --out $OUT/digits_cuda.json 2>&1 | tail -3
python3 -c "import json;d=json.load(open('$OUT/digits_cuda.json'));print('digits cuda', d['score'], d['timings'], d['throughput'], d['provenance'].get('hardware'), d['provenance']['model'].get('extraction'))"
timeout 120 python3 bench/evaluation_speed.py --device cuda --images 2000 --batch-size 128 --loader-workers 14 --skip shards,protocols 2>&1 | tee $OUT/bench_store_cuda.txt
timeout 150 python3 bench/protocols.py --device cuda --sizes sun397 2>&1 | tee $OUT/bench_protocols_sun397_cuda.txt
