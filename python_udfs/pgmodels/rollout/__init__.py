"""Safe rollouts: a candidate version beside a project's deployed one (the champion).

route.py decides which version answers each key and scores blocks of rows with both;
record.py keeps the answers a rollout's versions gave (pgmodels.rollout_predictions);
report.py joins them to the outcomes that arrive later and computes each version's
metric with its interval; decide.py applies a rollout's rule (promote, abort or wait).
The SQL surface is in sql/127_rollouts.sql and sql/128_rollouts_outcomes.sql.
"""
