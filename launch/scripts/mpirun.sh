#!/usr/bin/env bash
# Launches `switchyard` on N processes with Open MPI: ranks packed node by node (so that the
# expert-parallel group, which takes neighbouring ranks, stays inside a node), OpenMP threads
# split over the ranks of a node, the environment passed to every rank.
#
#   launch/scripts/mpirun.sh -n RANKS [--hostfile FILE] [--per-node N] [--threads T] \
#       [--mpirun-arg ARG ...] -- train --config run.yaml [--set ...]
#
#   -n RANKS        processes in the job (= tensor x context x data x pipeline of the config)
#   --hostfile FILE Open MPI hostfile ("node01 slots=8" per line); without it, this machine
#   --per-node N    ranks per node (default: RANKS on one machine, or the hostfile's slots)
#   --threads T     OpenMP threads per rank (default: cores of this machine / ranks per node)
#   --binary PATH   the switchyard executable (default: build/switchyard next to this script)
#   --mpirun-arg A  passed to mpirun as is (repeatable), e.g. --mpirun-arg --mca --mpirun-arg btl_tcp_if_include=eth0
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ranks="" hostfile="" per_node="" threads="" binary="$here/build/switchyard"
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--ranks) ranks="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --per-node) per_node="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --mpirun-arg) extra+=("$2"); shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "mpirun.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$ranks" || ! "$ranks" =~ ^[0-9]+$ || "$ranks" -lt 1 ]]; then
  echo "mpirun.sh: -n RANKS (a positive integer) is required" >&2; exit 2
fi
if [[ $# -eq 0 ]]; then echo "mpirun.sh: give the switchyard command after --, e.g. -- train --config run.yaml" >&2; exit 2; fi
if [[ ! -x "$binary" ]]; then echo "mpirun.sh: $binary not found; build it with scripts/build.sh" >&2; exit 1; fi
if [[ -n "$hostfile" && ! -r "$hostfile" ]]; then echo "mpirun.sh: hostfile $hostfile cannot be read" >&2; exit 1; fi

if [[ -z "$per_node" ]]; then per_node="$ranks"; fi
if [[ -z "$threads" ]]; then
  threads=$(( $(nproc) / per_node )); (( threads >= 1 )) || threads=1
fi

args=(-np "$ranks" --map-by "ppr:${per_node}:node" --bind-to none)
(( per_node > $(nproc) )) && args+=(--oversubscribe)
[[ -n "$hostfile" ]] && args+=(--hostfile "$hostfile")
# Open MPI refuses to run as root unless told twice (containers often run as root).
if [[ "$(id -u)" == 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMP_NUM_THREADS="$threads"
for variable in OMP_NUM_THREADS OPENBLAS_CORETYPE OPENBLAS_NUM_THREADS LD_PRELOAD; do
  [[ -n "${!variable:-}" ]] && args+=(-x "$variable")
done
echo "mpirun.sh: $ranks ranks, $per_node per node, $threads threads each${hostfile:+, hosts from $hostfile}" >&2
exec mpirun "${args[@]}" "${extra[@]}" "$binary" "$@"
