{#- postgres/train.sql (PostgreSQL's version of ../train.sql): the observations each metric's models are trained on.
    Variables: table_key, metric_batch, train_max_n, train_metric_timestamp_max_days_ago,
    train_exclude_metrics.
    Output: metric_timestamp, metric_name, metric_value, oldest first per metric. -#}
WITH data AS (
  SELECT metric_timestamp, metric_name, avg(metric_value) AS metric_value
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}'
    AND metric_type = 'metric'
    AND metric_value IS NOT NULL
    AND metric_timestamp >= (now() AT TIME ZONE 'UTC') - INTERVAL '{{ train_metric_timestamp_max_days_ago }} days'
    {%- if train_exclude_metrics %}
    AND metric_name NOT IN ({% for m in train_exclude_metrics %}'{{ m }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- endif %}
  GROUP BY metric_timestamp, metric_name
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY metric_name ORDER BY metric_timestamp DESC) AS recency_rank
  FROM data
)
SELECT metric_timestamp, metric_name, metric_value
FROM ranked
WHERE recency_rank <= {{ train_max_n }}
ORDER BY metric_name, metric_timestamp
