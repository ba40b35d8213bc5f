#!/usr/bin/env bash
# Builds .device/ (git-ignored) for the lent GPU machine, which has Python 3.12, torch (CUDA), transformers,
# sentence-transformers, pyarrow, pytest and scikit-learn but not winnow's other needs, and no network:
#   .device/site/        winnow itself and the pure-Python (or cp312 manylinux) packages it lacks: datatrove, pydantic, ...
#   .device/minilm-fp16/ the bundled all-MiniLM-L6-v2 saved in fp16 (about 44 MiB instead of 87)
#   .device/data/        a bench corpus of real documents (parquet)
# Everything must stay under the 64 MiB a `run` call carries. Then: bench/device/run_gpu.sh on the device.
#   bash bench/device/prep.sh [path/to/corpus/*.parquet]
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus="${1:-../shared/data/nltk_data/*.parquet}"
mkdir -p .device/site .device/data .device/whl
pkgs=(datatrove==0.10.1 pydantic==2.14.3 pydantic_core==2.50.4 typing_inspection==0.4.5 annotated_types==0.8.0
      loguru==0.7.3 orjson==3.13.0 humanize==4.17.0 dill==0.4.1 multiprocess==0.70.19 cloudpickle==3.1.2)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .device/whl "${pkgs[@]}"
python3 -m pip install -q --no-deps --no-compile --upgrade --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --target .device/site .device/whl/*.whl
# winnow itself, as installed (its folders map into one `winnow` namespace, so PYTHONPATH=. is not enough)
python3 -m pip install -q --no-deps --no-compile --upgrade --target .device/site .
rm -rf .device/site/datatrove/assets .device/site/bin .device/whl   # datatrove's language assets: not used
python3 - "$corpus" <<'PY'
import glob, sys
import pyarrow as pa, pyarrow.parquet as pq, torch
from sentence_transformers import SentenceTransformer
from winnow.embedding.embed import resolve_model_path
m = SentenceTransformer(str(resolve_model_path("bundled")), device="cpu", local_files_only=True).to(torch.float16)
m.save(".device/minilm-fp16")
texts = [t[:4000] for f in sorted(glob.glob(sys.argv[1])) for t in pq.read_table(f, columns=["text"])["text"].to_pylist() if t and t.strip()]  # noqa: E501 (under 64 MiB in all)
texts = [texts[i] for i in __import__("numpy").random.default_rng(0).permutation(len(texts))[:2000]]
pq.write_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), ".device/data/bench.parquet", compression="zstd", compression_level=19, use_dictionary=False)
print(f"{len(texts)} documents -> .device/data/bench.parquet")
PY
du -sh .device/*
