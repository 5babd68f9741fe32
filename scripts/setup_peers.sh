#!/usr/bin/env bash
# Overlay environment .venv-peers for the peer benchmarks (benchmarks/accuracy/train_cellpose.py, and
# benchmarks/accuracy/peers.py with --cellpose-model): Cellpose 3.1 on top of the main .venv.
#
# Why an overlay: cellpose 3.1.1.3 pins numpy<2.1, the main .venv has numpy 2.x, which must stay.
# Cellpose 3.1 runs with numpy 2.x in practice (the pin is not needed at run time), so .venv-peers
# holds only Cellpose and the few dependencies .venv lacks, installed with --no-deps, and a .pth file
# that adds .venv's site-packages behind its own: torch, numpy, scipy, tio2fiji (editable) ... come
# from .venv. (Cellpose 4.x is Cellpose-SAM, a different model that cannot be trained on a CPU.)
#
# Run scripts/setup.sh first. Safe to run again: each step is skipped when it is already done.
# Use it as: .venv-peers/bin/python benchmarks/accuracy/train_cellpose.py ...
set -euo pipefail
cd "$(dirname "$0")/.."

MAIN=.venv
PEERS=${PEERS_VENV:-.venv-peers}  # another place only for testing this script
# exact versions: the combination checked with numpy 2.4 / torch 2.14 (opencv 5 is a new major; keep 4.x)
PACKAGES=(cellpose==3.1.1.3 natsort==8.4.0 fastremap==1.21.0 fill-voids==2.1.2 opencv-python-headless==4.14.0.94)

[ -x "$MAIN/bin/python" ] || { echo "setup_peers: no $MAIN; run scripts/setup.sh first" >&2; exit 1; }

# 1. the venv, with the same base interpreter as .venv
if [ ! -x "$PEERS/bin/python" ]; then
  base=$("$MAIN/bin/python" -c "import sys; print(sys._base_executable)")
  echo "setup_peers: creating $PEERS with $("$base" --version)"
  "$base" -m venv "$PEERS"
fi
main_sp=$("$MAIN/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
main_sp=$(readlink -f "$main_sp")
peers_sp=$("$PEERS/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")

# 2. .venv's site-packages behind the overlay's own; addsitedir also runs .venv's .pth files
#    (the editable tio2fiji install)
echo "import site; site.addsitedir('$main_sp')" > "$peers_sp/zz_tio2fiji_main_venv.pth"

# 3. the overlay's own (old) setuptools would shadow .venv's (torch wants setuptools>=77)
if [ -d "$peers_sp/setuptools" ]; then
  "$PEERS/bin/python" -m pip uninstall -q -y setuptools
fi

# 4. Cellpose and the dependencies .venv lacks, without dependencies (numpy, torch stay .venv's)
want=$(printf '%s\n' "${PACKAGES[@]}")
if ! "$PEERS/bin/python" - "$peers_sp" <<EOF
import sys
from importlib.metadata import distributions
have = {d.metadata["Name"].lower().replace("_", "-"): d.version
        for d in distributions(path=[sys.argv[1]])}
want = dict(line.split("==") for line in """$want""".split())
sys.exit(0 if all(have.get(k) == v for k, v in want.items()) else 1)
EOF
then
  echo "setup_peers: installing ${PACKAGES[*]} into $PEERS (--no-deps)"
  "$PEERS/bin/python" -m pip install -q --disable-pip-version-check --no-deps "${PACKAGES[@]}"
fi

# 5. check: the overlay imports Cellpose with .venv's numpy (no numpy of its own)
if [ -d "$peers_sp/numpy" ]; then
  echo "setup_peers: $PEERS has its own numpy; it must use $MAIN's" >&2; exit 1
fi
"$PEERS/bin/python" - "$main_sp" <<'EOF'
import sys
import numpy, torch, cellpose, tio2fiji  # noqa: F401
from importlib.metadata import version
if not numpy.__file__.startswith(sys.argv[1]):
    sys.exit(f"setup_peers: numpy comes from {numpy.__file__}, not from .venv")
print(f"setup_peers: ready (cellpose {version('cellpose')}, numpy {numpy.__version__}, "
      f"torch {torch.__version__}, tio2fiji {tio2fiji.__version__})")
EOF
