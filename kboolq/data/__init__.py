"""From raw rows to batches: the first half of kboolq's flow.

boolq.py (rows from the hub, TFDS or local files; the holdout split) -> glove.py (word vectors
and their cache) -> tokens.py (text to tokens) -> layout.py (tokens to GloVe ids in the notebook's
question | separator | passage layout, cached) -> batches.py (vectors gathered per batch).
"""
