{#- Calling pgmodels from a model's SQL.

    {{ pgmodels.predict('churn', 'f') }}                         -- a row (a table alias): features matched by name
    {{ pgmodels.predict('churn', ['tenure_months', 'contract']) }} -- named columns (as a jsonb object)
    {{ pgmodels.predict('churn', {'tenure_months': 'tenure * 12'}) }}  -- feature name -> SQL expression
    {{ pgmodels.predict('churn', array=['a', 'b', 'c']) }}       -- expressions in feature order (a real[])
    {{ pgmodels.predict('churn', 'features_array') }}            -- any SQL expression: an array column, jsonb
    {{ pgmodels.predict(42, 'f') }}                               -- a model version by id, not the deployed one

    The functions are called unqualified unless the var pgmodels_schema names the
    extension's schema. -#}

{% macro predict(project, features=none, array=none) -%}
    {{ pgmodels._call('predict', project, features, array) }}
{%- endmacro %}

{% macro predict_proba(project, features=none, array=none) -%}
    {{ pgmodels._call('predict_proba', project, features, array) }}
{%- endmacro %}

{% macro predict_label(project, features=none, array=none) -%}
    {{ pgmodels._call('predict_label', project, features, array) }}
{%- endmacro %}

{#- The deployed model of a project as a one-row relation (model_id, model_version, key_metric):
    join it to store with each prediction which model made it. With no deployed model (or
    no such project, or no privilege on it) the model fails with pgmodels' own error and
    hint, instead of building an empty table: predict() is asked, and raises it. A model
    that uses this must run after the one that trains: `-- depends_on: {{ ref('...') }}`. -#}
{% macro deployed(project) -%}
    (select o.model_id, o.version as model_version, o.key_metric
       from pgmodels.overview o where o.project = {{ pgmodels._literal(project) }} and o.deployed
     union all
     select null, null, null
      where case when exists (select 1 from pgmodels.overview o
                               where o.project = {{ pgmodels._literal(project) }} and o.deployed) then false
                 else {{ pgmodels._fn('predict') }}({{ pgmodels._literal(project) }}::text, '{}'::jsonb) is null end)
{%- endmacro %}

{#- A bigint for this dbt invocation, as batch jobs store their run's id: the run's start
    time, yyyymmddhhmmss (UTC), which dbt's run_results.json also records. -#}
{% macro run_id() -%}
    {{ run_started_at.strftime('%Y%m%d%H%M%S') }}::bigint
{%- endmacro %}

{% macro _call(fn, project, features, array) -%}
    {{ pgmodels._fn(fn) }}({{ pgmodels._project(project) }}, {{ pgmodels._features(features, array) }})
{%- endmacro %}

{% macro _fn(name) -%}
    {%- set schema = var('pgmodels_schema', none) -%}
    {%- if schema %}{{ adapter.quote(schema) }}.{% endif %}{{ name }}
{%- endmacro %}

{% macro _project(project) -%}
    {%- if project is number -%}{{ project | int }}::bigint
    {%- elif project is string -%}{{ pgmodels._literal(project) }}::text
    {%- else -%}{{ exceptions.raise_compiler_error("pgmodels: the project must be a name or a model id, got " ~ project) }}
    {%- endif -%}
{%- endmacro %}

{% macro _features(features, array) -%}
    {%- if array is not none and features is not none -%}
        {{ exceptions.raise_compiler_error("pgmodels: give the features or array=[...], not both") }}
    {%- elif array is not none -%}
        ARRAY[{% for e in array %}({{ e }}){% if not loop.last %}, {% endif %}{% endfor %}]::real[]
    {%- elif features is none -%}
        {{ exceptions.raise_compiler_error("pgmodels: no features: give a row alias, a list of columns, a mapping or array=[...]") }}
    {%- elif features is string -%}
        {{ features }}
    {%- elif features is mapping -%}
        jsonb_build_object({% for name, expr in features.items() %}{{ pgmodels._literal(name) }}, {{ expr }}{% if not loop.last %}, {% endif %}{% endfor %})
    {%- else -%}
        jsonb_build_object({% for name in features %}{{ pgmodels._literal(name) }}, {{ adapter.quote(name) }}{% if not loop.last %}, {% endif %}{% endfor %})
    {%- endif -%}
{%- endmacro %}

{% macro _literal(text) -%}
    '{{ text | string | replace("'", "''") }}'
{%- endmacro %}
