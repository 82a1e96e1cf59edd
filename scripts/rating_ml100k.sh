#!/usr/bin/env bash
# README rating table: 5-fold cross-validated RMSE and MAE on MovieLens-100K for mf, pmf, nmf, userknn and
# itemknn (experiment=rating_ml-100k; each run trains and tests all five folds), then the table as Markdown
# (test/rmse is the mean over folds, test/rmse_std the spread between folds). Re-running resumes.
#   scripts/rating_ml100k.sh                           # extra arguments go to `recbench train`
set -euo pipefail
cd "$(dirname "$0")/.."
export RECBENCH_DATA_DIR="${RECBENCH_DATA_DIR:-../shared/datasets}"
OUT="${OUT:-outputs/results/rating_ml100k}"
recbench train experiment=rating_ml-100k hydra/launcher=parallel hydra.sweep.dir="$OUT" "$@" && recbench report "$OUT" --metric test/rmse --metric test/rmse_std --metric test/mae --rows model --format markdown --out "$OUT/rating_ml100k.md"
cat "$OUT/rating_ml100k.md"
