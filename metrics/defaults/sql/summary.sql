{#- summary.sql: the batch's rows per metric and type: row count, first and last timestamp,
    last value.
    Variables: table_key, metric_batch.
    Output: metric_batch, metric_name, metric_type, n, first_timestamp, last_timestamp,
    last_value. -#}
SELECT metric_batch, metric_name, metric_type,
  count(*) AS n,
  min(metric_timestamp) AS first_timestamp,
  max(metric_timestamp) AS last_timestamp,
  arg_max(metric_value, metric_timestamp) AS last_value
FROM {{ table_key }}
WHERE metric_batch = '{{ metric_batch }}'
GROUP BY metric_batch, metric_name, metric_type
ORDER BY metric_batch, metric_name, metric_type
