"""Monitoring (issue #13, work in progress on branch wip/drift): reference profiles of
the training features, drift of current data against them, and later scheduled monitors
and retraining.

- ``profile.py``  what a model version keeps of its training data, per feature
- ``drift.py``    PSI, the Kolmogorov-Smirnov test and null-rate change against a profile
"""
