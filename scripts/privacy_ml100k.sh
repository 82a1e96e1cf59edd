#!/usr/bin/env bash
# README privacy-utility table and plot: experiment=privacy_ml-100k (DP-SGD at epsilon 0.5, 1, 2, 4, 8 and
# privacy off, no early stopping) for gmf and ncf (ranking), and for mf with eval=rating (NDCG@10 and RMSE),
# then scripts/privacy_report.py writes the table (.md, .csv) and the plot (.png). Re-running resumes.
#   scripts/privacy_ml100k.sh                     # seeds 1-3
#   SEEDS=1 scripts/privacy_ml100k.sh             # seed 1 only (what the README table ran)
set -euo pipefail
cd "$(dirname "$0")/.."
export RECBENCH_DATA_DIR="${RECBENCH_DATA_DIR:-../shared/datasets}"
OUT="${OUT:-outputs/results/privacy_ml100k}"
SEEDS="${SEEDS:-1,2,3}"
COMMON=(trainer.num_threads=1 trainer.progress=false save_model=false "hydra.sweeper.params.seed=\"$SEEDS\"")
recbench train experiment=privacy_ml-100k 'hydra.sweeper.params.model="gmf,ncf"' "${COMMON[@]}" \
  hydra.sweep.dir="$OUT/ranking" "$@"
recbench train experiment=privacy_ml-100k hydra.sweeper.params.model=mf eval=rating "${COMMON[@]}" \
  hydra.sweep.dir="$OUT/mf_rating" "$@"
python scripts/privacy_report.py "$OUT/ranking" "$OUT/mf_rating" --out "$OUT/privacy_ml100k"
