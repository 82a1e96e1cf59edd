#!/usr/bin/env bash
# README results table: every ranking model on MovieLens-100K (random 80/10/10 split, full ranking, seeds
# 1-3; experiment=ml100k_all), two jobs at a time, then the table (mean ± std over seeds, paired tests
# against popularity) as Markdown. Re-running resumes: finished jobs in the sweep folder are skipped.
#   scripts/results_ml100k.sh                          # extra arguments go to `recbench train`, e.g.
#   scripts/results_ml100k.sh hydra.launcher.n_jobs=4
set -euo pipefail
cd "$(dirname "$0")/.."
export RECBENCH_DATA_DIR="${RECBENCH_DATA_DIR:-../shared/datasets}"
OUT="${OUT:-outputs/results/ml100k_all}"
recbench train experiment=ml100k_all hydra/launcher=parallel hydra.sweep.dir="$OUT" "$@" && recbench report "$OUT" --metric test/ndcg@10 --metric test/recall@10 --metric test/hit@10 --metric test/coverage@10 --rows model --baseline model=pop --format markdown --out "$OUT/results_ml100k.md"
cat "$OUT/results_ml100k.md"
