#!/usr/bin/env bash
# The GPU checks of issues 9 and 17 in one call on the lent machine (after bench/device/prep.sh here):
#   run(command="bash bench/device/run_gpu.sh", carry=[".device"], timeout_s=590)
# Results land in $OUT (embed.jsonl, wordpiece.jsonl, cluster.jsonl, semdedup.jsonl, gpu-tests.log, log.txt). Each
# step has its own time limit and prints as it goes, so a slow step costs only itself; the limits add up to
# 120 + 135 + 80 + 80 + 95 + 60 = 570 s, inside one call's 600.
set -uo pipefail
export PYTHONPATH="$PWD/.device/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT="${OUT:-/tmp/winnow-gpu}"; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
python3 -c "import torch, transformers, sentence_transformers as st; print(torch.__version__, transformers.__version__, st.__version__)"
model=.device/minilm-fp16 data=.device/data/bench.parquet
# winnow is imported from .device/site (installed by prep.sh): say so when it is older than the working tree
for f in clustering/semdedup.py clustering/kmeans.py; do
  cmp -s "$f" ".device/site/winnow/$f" || echo "WARNING: .device/site/winnow/$f differs from $f: rerun bench/device/prep.sh"
done
# 1. GPU tests (the files that hold them; the rest of the suite needs faiss/polars, absent there)
timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/pipeline/test_embed.py tests/clustering/test_kmeans.py \
  tests/clustering/test_semdedup_backends.py tests/pipeline/test_wordpiece.py tests/scorers/test_llm.py 2>&1 \
  | tee "$OUT/gpu-tests.log" | tail -15
# 2. embed stage vs bare forward vs tokenizer pool vs stock (target 1: >= 0.75 of min(bare, tokenizer ceiling))
timeout 135 python3 bench/embed.py --input "$data" --model "$model" --device cuda --n 40000 --stock-n 5000 \
  --tokenizer-procs "$(( $(nproc) - 1 ))" --out "$OUT/embed.jsonl" | grep -v '^ '
# 3. the moonshot: WordPiece on the GPU (ids checked against HF on every document), then the stage with it
timeout 80 python3 bench/wordpiece.py --input "$data" --model "$model" --n 100000 --batch 8192 --device cuda \
  --procs "$(( $(nproc) - 1 ))" --out "$OUT/wordpiece.jsonl" | grep -v '^ '
timeout 80 python3 bench/embed.py --input "$data" --model "$model" --device cuda --n 100000 --skip tok1,tokN,stock \
  --tokenizer torch --out "$OUT/embed.jsonl" | grep -v '^ '
# 4. torch k-means on the GPU (target 3: 1M x 384, k = 10,000, 20 iterations <= 3 s; assignment of 10M)
timeout 95 python3 bench/cluster.py --backend torch --device cuda --n 1000000 --k 10000 --niter 20 \
  --assign-n 10000000 --out "$OUT/cluster.jsonl"
# 5. SemDeDup (issue 17): numpy on the host's cores against torch on CUDA (float32, bfloat16), bit-identity checked;
#    one cluster of 50k, then 1M vectors in 1,000 clusters (imports only numpy, torch, winnow.clustering.semdedup)
timeout 60 python3 bench/semdedup.py --device cuda --out "$OUT/semdedup.jsonl" | grep -v '^[ {}]'
echo done
