{#- A generic test: fails when a project has no deployed model, or when the deployed
    model's key metric (f1 for classification, r2 for regression; or metric: any key of
    its metrics, e.g. roc_auc) is below min_metric. Attach it to the model that predicts:

    data_tests:
      - pgmodels.deployed_model:
          project: churn
          min_metric: 0.7

    Each failing row says what is wrong. -#}

{% test deployed_model(model, project, min_metric=none, metric=none) %}
with deployed as (
    select o.version,
           {% if metric is not none -%}
           (o.metrics ->> {{ pgmodels._literal(metric) }})::float8
           {%- else -%}
           o.key_metric::float8
           {%- endif %} as value
      from pgmodels.overview o
     where o.project = {{ pgmodels._literal(project) }} and o.deployed
)
select 'project ' || {{ pgmodels._literal(project) }} || ' has no deployed model' as problem,
       null::integer as version, null::float8 as value
 where not exists (select 1 from deployed)
{%- if min_metric is not none %}
union all
select 'the deployed model''s ' || {{ pgmodels._literal(metric or 'key metric') }} || ' is '
       || coalesce(d.value::text, 'missing') || ', below ' || {{ min_metric | float }}::text,
       d.version, d.value
  from deployed d
 where d.value is null or d.value < {{ min_metric | float }}
{%- endif %}
{% endtest %}
