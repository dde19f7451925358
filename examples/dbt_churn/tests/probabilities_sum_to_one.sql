-- a singular test: every stored probability vector has two classes summing to 1
select customer_id, probabilities
  from {{ ref('churn_predictions') }}
 where array_length(probabilities, 1) <> 2
    or abs(probabilities[1] + probabilities[2] - 1) > 1e-4
