#!/usr/bin/env bash
# Set up tio2fiji on a fresh Debian/Ubuntu machine: OS packages (Java, ImageJ, Chromium for the
# report's browser test, Tesseract for scale-bar labels), a virtual environment in .venv, and the package with its test
# dependencies. Safe to run again: each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
APT_PACKAGES=(default-jre libij-java python3-venv chromium xvfb tesseract-ocr)

missing=()
# a JRE with AWT (not -headless): the macro tests run ImageJ's menu commands under Xvfb
java_gui() { command -v java >/dev/null 2>&1 && [ -e "$(dirname "$(readlink -f "$(command -v java)")")/../lib/libawt_xawt.so" ]; }
java_gui || missing+=(default-jre)
[ -e /usr/share/java/ij.jar ] || [ -n "${TIO2FIJI_IJ_JAR:-}" ] || missing+=(libij-java)
"$PY" -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
command -v xvfb-run >/dev/null 2>&1 || missing+=(xvfb)
# Tesseract reads a burned-in scale bar's label when an image has no calibration metadata
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing OS packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
    echo "setup: need root to install ${missing[*]} (apt-get install ${APT_PACKAGES[*]})" >&2; exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi

# Reinstall only when the dependency list changed.
stamp=.venv/.tio2fiji-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import tio2fiji" 2>/dev/null; then
  echo "setup: installing tio2fiji and its dependencies into .venv (torch is large: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi
echo "setup: ready ($(.venv/bin/tio2fiji --version))"
