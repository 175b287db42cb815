#!/usr/bin/env bash
# GPU timing of the pipeline's two training rules, run ON the GPU machine from a clone:
#
#   bash benchmarks/gpu.sh ../shared/data/mp2018_36737.csv.gz > gpu.jsonl
#
# (a) one epoch of ΔEf pretraining on the table (the pretrain rule's own call,
# tlcgcnn.train.pretrain.pretrain) and (b) one fine-tuning cell of log10 K_VRH at n = 1,000, 10
# seeds, one after the other and then as one vmapped ensemble (train.ensemble off / on; the
# finetune rule's own call, tlcgcnn.train.finetune.finetune_cell;
# the settings of benchmarks/configs/finetune_cell_fast.yaml). One JSON line per measurement
# on stdout (device, seconds, accuracy); the log is results/gpu_timing/gpu_timing.log.
# Further arguments go to benchmarks/gpu_timing.py (--epochs, --size, --seeds, --amp,
# --ensemble, --device cpu for a dry run, --sample N for a small one; --help).
#
# Installs nothing: it uses the machine's own torch (its CUDA build) and the package from
# this checkout (src/, no pip install). The table is first ingested, featurized and split as
# the rules do, which needs the package's other dependencies (pyproject.toml); a missing one
# is named below, with a command that installs them without replacing the machine's torch.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash benchmarks/gpu.sh TABLE [gpu_timing.py options]" >&2; exit 2; }
TABLE=$1
shift
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

missing=$("$PY" - <<'EOF'
import importlib.util
mods = ["torch", "numpy", "pandas", "pyarrow", "scipy", "yaml", "jsonschema", "tqdm", "gemmi", "pymatgen"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "missing Python modules: $missing" >&2
    case " $missing " in *" torch "*) echo "install the torch build of this machine's GPU first (https://pytorch.org)" >&2 ;; esac
    echo "the others, keeping the machine's torch: grep -v '^torch==' requirements.txt > /tmp/req.txt && $PY -m pip install -r /tmp/req.txt" >&2
    exit 1
fi
case " $* " in
    *" --device cpu "* | *" --device=cpu "*) ;;
    *) "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device (torch ' + torch.__version__ + '); --device cpu for a dry run')" ;;
esac
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || true

exec "$PY" benchmarks/gpu_timing.py --table "$TABLE" "$@"
