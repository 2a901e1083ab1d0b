{#- postgres/llmalert.sql (PostgreSQL's version of ../llmalert.sql): the values the llmalert job sends to the chat model.
    Variables: table_key, metric_batch, llmalert_metric_timestamp_max_days_ago,
    llmalert_prompt_max_n, llmalert_smooth_n (the rows smoothing needs before the first one shown).
    Output: metric_timestamp, metric_name, metric_value, oldest first per metric. -#}
WITH data AS (
  SELECT metric_timestamp, metric_name, avg(metric_value) AS metric_value
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}'
    AND metric_type = 'metric'
    AND metric_timestamp >= (now() AT TIME ZONE 'UTC') - INTERVAL '{{ llmalert_metric_timestamp_max_days_ago }} days'
  GROUP BY metric_timestamp, metric_name
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY metric_name ORDER BY metric_timestamp DESC) AS recency_rank
  FROM data
)
SELECT metric_timestamp, metric_name, metric_value
FROM ranked
WHERE recency_rank <= {{ llmalert_prompt_max_n }} + {{ llmalert_smooth_n }}
ORDER BY metric_name, metric_timestamp
