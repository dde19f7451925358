-- what the model learns from: train() takes every column but the target as a feature,
-- so only the features and churned. The post-hook trains while the project has no
-- deployed model (a first `dbt build`); later versions: dbt run-operation pgmodels_train.
{{ config(post_hook=pgmodels.train_if_undeployed(var('churn_project'), this, 'churned',
                                                 algorithm='xgboost', hyperparams={'n_estimators': 50, 'max_depth': 4})) }}
select tenure_months,
       monthly_charges,
       support_calls,
       paperless,
       contract,
       churned
  from {{ ref('stg_customers') }}
