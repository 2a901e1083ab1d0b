{#- summary.sql: per batch, metric and type: row count, first and last timestamp, last value.
    Variables: table_key.
    Output: metric_batch, metric_name, metric_type, n, first_timestamp, last_timestamp,
    last_value. -#}
SELECT metric_batch, metric_name, metric_type,
  count(*) AS n,
  min(metric_timestamp) AS first_timestamp,
  max(metric_timestamp) AS last_timestamp,
  arg_max(metric_value, metric_timestamp) AS last_value
FROM {{ table_key }}
GROUP BY metric_batch, metric_name, metric_type
ORDER BY metric_batch, metric_name, metric_type
