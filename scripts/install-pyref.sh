#!/usr/bin/env bash
# Installs the Python references of the tests and of `make bench-peer`
# (PyTorch on the CPU, transformers, PEFT, TRL, gguf, safetensors,
# TensorBoard's event reader) into a virtual
# environment outside the repo, and prints its python. finetune itself never
# needs Python: only the peer tests (adapters/peer_test.go, ...) and the
# side-by-side benchmark use it.
#
#   scripts/install-pyref.sh            # prints e.g. /root/.cache/finetune/pyref/bin/python
#   FINETUNE_PYREF=/some/dir scripts/install-pyref.sh
#
# Every version is pinned below and installed with --no-deps, so what is
# installed is exactly this list. PyPI's torch wheel for Linux asks for about
# 3 GB of CUDA wheels (nvidia-*, cuda-toolkit, triton); the references only
# run on the CPU, so instead scripts/pyref/cudastub.py writes small stand-in
# libraries for the CUDA sonames torch links against (every call answers "no
# device"). A second run with the same pins does nothing and takes well under
# a second. Needs python3 (3.10 or newer) with venv, cc and readelf.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${FINETUNE_PYREF:-${XDG_CACHE_HOME:-$HOME/.cache}/finetune/pyref}"

pins=(
  torch==2.15.0
  transformers==5.23.0
  peft==0.21.2
  gguf==0.19.0
  safetensors==0.8.0
  numpy==2.4.6
  tokenizers==0.23.3
  huggingface_hub==2.4.0
  accelerate==1.15.0
  hf-xet==1.8.0
  filelock==4.3.1
  fsspec==2026.9.0
  Jinja2==3.1.6
  MarkupSafe==3.0.4
  mpmath==1.3.0
  networkx==3.6.1
  sympy==1.14.0
  typing_extensions==4.16.0
  setuptools==84.2.1
  PyYAML==6.0.4
  packaging==26.4
  psutil==7.2.2
  regex==2026.11.19
  tqdm==4.70.1
  requests==2.34.2
  urllib3==2.8.0
  idna==3.20
  certifi==2026.10.19.post1
  charset-normalizer==3.5.3
  typer==0.29.2
  click==8.5.1
  rich==15.0.0
  Pygments==2.21.0
  markdown-it-py==4.3.0
  mdurl==0.1.2
  shellingham==1.5.4
  annotated-doc==0.0.7
  annotated-types==0.8.0
  pydantic==2.14.4
  pydantic_core==2.50.5
  typing-inspection==0.4.5
  anyio==4.16.0
  h11==0.16.0
  httpcore2==2.16.2
  httpx2==2.16.2
  truststore==0.10.5
  # TensorBoard's own reader, for track's event files.
  tensorboard==2.21.0
  tensorboard-data-server==0.7.2
  protobuf==7.36.2
  absl-py==2.5.1
  grpcio==1.85.3
  Markdown==3.11.3
  pillow==13.0.0
  Werkzeug==3.1.9
  # TRL's DPOTrainer, the peer of finetune's DPO, and its data path.
  trl==1.16.0
  datasets==5.2.0
  pandas==3.1.1
  pyarrow==26.0.1
  dill==0.4.1
  multiprocess==0.70.19
  xxhash==4.1.0
  python-dateutil==4.0.0
  tzdata==2026.6
)
stamp="$(printf '%s\n' "${pins[@]}" | cat - "$here/pyref/cudastub.py" | sha256sum | cut -c1-16)"

if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$stamp" ]; then
  echo "$venv/bin/python"
  exit 0
fi

start=$(date +%s)
py="${PYTHON:-python3}"
"$py" -m venv --clear "$venv" >&2
"$venv/bin/python" -m pip install -q --no-deps --disable-pip-version-check "${pins[@]}" >&2
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$venv/bin/python" "$here/pyref/cudastub.py" "$site" >&2
# Prove it imports and computes before declaring it installed.
CUDA_VISIBLE_DEVICES= "$venv/bin/python" - >&2 <<'PY'
import importlib.metadata as md
import torch, transformers, peft, gguf, safetensors, trl, datasets, pandas
from trl import DPOConfig, DPOTrainer
from tensorboard.backend.event_processing import event_accumulator
x = torch.randn(3, 3, requires_grad=True)
(x @ x).sum().backward()
assert not torch.cuda.is_available()
print("pyref: torch %s, transformers %s, peft %s, trl %s, gguf %s" % (
    torch.__version__, transformers.__version__, peft.__version__, trl.__version__, md.version("gguf")))
PY
echo "$stamp" >"$venv/.pins"
echo "pyref: installed in $(( $(date +%s) - start ))s" >&2
echo "$venv/bin/python"
