-- the raw customers, cleaned: contract names in lower case, nothing else changed
select customer_id,
       tenure_months,
       monthly_charges,
       support_calls,
       paperless,
       lower(contract) as contract,
       churned,
       updated_at
  from {{ ref('raw_customers') }}
