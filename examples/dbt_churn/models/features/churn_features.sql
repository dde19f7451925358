-- one row per customer: its key, when it last changed, and the model's features by name
select customer_id,
       updated_at,
       tenure_months,
       monthly_charges,
       support_calls,
       paperless,
       contract
  from {{ ref('stg_customers') }}
