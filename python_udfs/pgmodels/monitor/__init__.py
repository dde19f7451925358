"""Monitoring: reference profiles of the training features, drift of current data
against them, scheduled monitors, drift reports and retraining.

- ``profile.py``   what a model version keeps of its training data, per feature
- ``drift.py``     PSI, the Kolmogorov-Smirnov test and null-rate change against a profile
- ``current.py``   drift() over a relation or query: the current side, read as the caller
- ``report.py``    drift() and set_reference(): current rows against a reference profile
- ``schedule.py``  monitor() and run_monitor(): drift reports on pg_cron's schedule
- ``retrain.py``   retraining when a monitor says so, and the comparison that decides a deploy
- ``holdout.py``   the labelled rows a retrain is judged on, kept out of its training
- ``lineage.py``   where a model version came from: its data, its training, its deployments
"""
