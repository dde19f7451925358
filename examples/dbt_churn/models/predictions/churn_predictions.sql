-- The deployed churn model's prediction for every customer, kept current incrementally:
-- the same table a pgmodels batch job writes (key, prediction, probabilities, label,
-- model_id, model_version, scored_at, run_id), so an app reads either the same way.
-- A run scores only the customers changed since the last run (updated_at past the last
-- scored_at), unless the deployed model changed since: then it rescores everyone.
-- Rows are upserted by key (merge); `dbt build --full-refresh` rebuilds the table, which
-- also drops customers that left.
-- depends_on: {{ ref('churn_training') }}
{{ config(unique_key='customer_id', incremental_strategy='merge') }}

select f.customer_id,
       {{ pgmodels.predict(var('churn_project'), 'f') }} as prediction,
       {{ pgmodels.predict_proba(var('churn_project'), 'f') }} as probabilities,
       {{ pgmodels.predict_label(var('churn_project'), 'f') }} as label,
       d.model_id,
       d.model_version,
       now() as scored_at,
       {{ pgmodels.run_id() }} as run_id
  from {{ ref('churn_features') }} f
 cross join {{ pgmodels.deployed(var('churn_project')) }} d
{% if is_incremental() %}
 where f.updated_at > (select coalesce(max(p.scored_at), '-infinity') from {{ this }} p)
    or exists (select 1 from {{ this }} p where p.model_id is distinct from d.model_id)
{% endif %}
