{#- Training from dbt.

    dbt run-operation pgmodels_train --args '{project: churn, model: churn_training, target: churned,
                                            task: classification, algorithm: xgboost}'

    trains a new version of a project on a model of the project (model: ..., resolved with
    ref) or any relation (relation: schema.table), with train()'s arguments (target is
    y_column_name; left out, they reuse the project's previous training), and logs the
    version, its key metric and whether it was deployed. require_deployed: true fails the
    operation when the new version is not the deployed one.

    As a post-hook, {{ pgmodels.train_if_undeployed('churn', this, 'churned') }} trains only
    while the project has no deployed model, so a first `dbt build` makes one. -#}

{% macro pgmodels_train(project, model=none, relation=none, target=none, task=none, algorithm=none,
                        hyperparams=none, search=none, search_params=none, search_args=none, test_size=none,
                        test_sampling=none, automatic_deploy=true, preprocess=none, require_deployed=false) %}
    {%- if model is not none and relation is not none -%}
        {{ exceptions.raise_compiler_error("pgmodels_train: give model or relation, not both") }}
    {%- endif -%}
    {%- set rel = ref(model) if model is not none else relation -%}
    {%- set sql -%}
        select t.project, t.version, t.algorithm, t.deployed, t.model_id,
               case t.task when 'classification' then 'f1 ' || (t.metrics ->> 'f1') else 'r2 ' || (t.metrics ->> 'r2') end
                   as key_metric,
               t.metrics::text as metrics
          from {{ pgmodels._train_call(project, rel, target, task, algorithm, hyperparams, search, search_params,
                                       search_args, test_size, test_sampling, automatic_deploy, preprocess) }} t
    {%- endset -%}
    {%- set result = run_query(sql) -%}
    {%- do run_query("commit") -%}
    {%- set row = result.rows[0] -%}
    {{ log("pgmodels: trained " ~ row['project'] ~ " version " ~ row['version'] ~ " (" ~ row['algorithm'] ~ "), "
           ~ row['key_metric'] ~ ", " ~ ("deployed" if row['deployed'] else "not deployed (the deployed version scores better)"),
           info=true) }}
    {%- if require_deployed and not row['deployed'] -%}
        {{ exceptions.raise_compiler_error("pgmodels_train: version " ~ row['version'] ~ " of " ~ project
                                           ~ " was not deployed") }}
    {%- endif -%}
    {{ return(row) }}
{% endmacro %}

{% macro train_if_undeployed(project, relation, target, task='classification', algorithm=none, hyperparams=none,
                             preprocess=none) -%}
    select count(*) from (select 1 where not exists (select 1 from pgmodels.overview o
                                                      where o.project = {{ pgmodels._literal(project) }} and o.deployed)) g,
         lateral {{ pgmodels._train_call(project, relation, target, task, algorithm, hyperparams, none, none, none, none,
                                        none, true, preprocess) }} t
{%- endmacro %}

{% macro _train_call(project, relation, target, task, algorithm, hyperparams, search, search_params, search_args,
                     test_size, test_sampling, automatic_deploy, preprocess) -%}
    {%- set args = [('project_name', pgmodels._literal(project))] -%}
    {%- if relation is not none and relation is not string -%}{%- set relation = relation.include(database=false) -%}{%- endif -%}
    {%- for name, value in [('task', task), ('relation_name', relation), ('y_column_name', target),
                            ('algorithm', algorithm), ('search', search), ('test_sampling', test_sampling)] -%}
        {%- if value is not none %}{% do args.append((name, pgmodels._literal(value))) %}{% endif -%}
    {%- endfor -%}
    {%- for name, value in [('hyperparams', hyperparams), ('search_params', search_params),
                            ('search_args', search_args), ('preprocess', preprocess)] -%}
        {%- if value is not none %}{% do args.append((name, pgmodels._literal(tojson(value)) ~ '::jsonb')) %}{% endif -%}
    {%- endfor -%}
    {%- if test_size is not none %}{% do args.append(('test_size', (test_size | float) ~ '::real')) %}{% endif -%}
    {%- do args.append(('automatic_deploy', 'true' if automatic_deploy else 'false')) -%}
    {{ pgmodels._fn('train') }}({% for name, value in args %}{{ name }} => {{ value }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}
