"""Why this prediction: per-feature contributions of a model version's predictions.

- :mod:`.build` makes a version's explainer record at training time (exact TreeSHAP for
  tree ensembles, exact contributions for linear models, a permutation-sampling estimate
  for everything else), with its global importance;
- :mod:`.record` is the record's format (an ``.npz`` of plain arrays and a JSON
  description, read without pickle, checked by sha256);
- :mod:`.explainer` loads a record and explains rows; :mod:`.treeshap`, :mod:`.trees`,
  :mod:`.linear`, :mod:`.sampling` and :mod:`.transform` are its parts.

Contributions are reported per feature the user gave: the model's columns that one text
column became (one-hot, target encoding) are summed back into that column.
"""
