"""Sequential (next-item) recommenders: GRU4Rec, Caser, NextItNet, SASRec and BERT4Rec.

Each model reads a user's time-ordered history (from ``Interactions.sequences``) and scores the next
item over the whole catalogue. ``layers`` holds the shared network blocks and ``data`` the sequence
batching; the models live in one module each.
"""
