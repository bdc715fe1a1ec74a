set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee $OUT/gpu.txt
python3 -m pytest tests/workers/test_cuda.py tests/workers/test_metrics.py -q -p no:cacheprovider 2>&1 | tail -5 | tee $OUT/pytest_cuda.txt
python3 bench/extract.py --device cuda --images 2000 --batch-size 128 --workers 14 2>&1 | tee $OUT/bench_cuda_small.txt
python3 bench/extract.py --device cuda --images 600 --batch-size 128 --workers 14 --photo-scale 5 2>&1 | tee $OUT/bench_cuda_large.txt
python3 -m workers evaluate --model efficientnet_lite0 --benchmark digits --device cuda --batch-size 256 --workers 8 --quiet --out $OUT/digits_cuda.json 2>&1 | tail -3
python3 -c "import json;d=json.load(open('$OUT/digits_cuda.json'));print('digits cuda', d['score'], d['timings'], d['throughput'], d['provenance'].get('hardware'))"
