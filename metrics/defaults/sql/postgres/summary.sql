{#- postgres/summary.sql (PostgreSQL's version of ../summary.sql): per batch, metric and type: row count, first and last timestamp, last value.
    Variables: table_key.
    Output: metric_batch, metric_name, metric_type, n, first_timestamp, last_timestamp,
    last_value. -#}
SELECT metric_batch, metric_name, metric_type,
  count(*) AS n,
  min(metric_timestamp) AS first_timestamp,
  max(metric_timestamp) AS last_timestamp,
  (array_agg(metric_value ORDER BY metric_timestamp DESC))[1] AS last_value
FROM {{ table_key }}
GROUP BY metric_batch, metric_name, metric_type
ORDER BY metric_batch, metric_name, metric_type
