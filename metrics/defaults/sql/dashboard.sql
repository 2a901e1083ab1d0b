{#- dashboard.sql: every metric's series for the dashboard's charts: values with score,
    alert, change and feedback marks, alert_max_n observations per metric.
    Variables: table_key, metric_batch, alert_max_n.
    Output: metric_timestamp, metric_name, metric_value, metric_score, metric_alert,
    metric_change, thumbsup, thumbsdown, alert_driver_us (when an alert's metadata names the
    observation that drove it, its time: the mark goes there), oldest first per metric. -#}
WITH data AS (
  SELECT metric_timestamp, metric_name,
    avg(CASE WHEN metric_type = 'metric' THEN metric_value END) AS metric_value,
    avg(CASE WHEN metric_type = 'score' THEN metric_value END) AS metric_score,
    max(CASE WHEN metric_type IN ('alert', 'tholdalert') THEN metric_value END) AS metric_alert,
    max(CASE WHEN metric_type = 'alert' THEN
      TRY_CAST(regexp_extract(metadata, '"driver":\{[^}]*"timestamp_us":(-?[0-9]+)', 1) AS BIGINT) END) AS alert_driver_us,
    max(CASE WHEN metric_type = 'change' THEN metric_value END) AS metric_change,
    count(CASE WHEN metric_type = 'thumbsup' THEN 1 END) AS thumbsup,
    count(CASE WHEN metric_type = 'thumbsdown' THEN 1 END) AS thumbsdown
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}'
  GROUP BY metric_timestamp, metric_name
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY metric_name ORDER BY metric_timestamp DESC) AS recency_rank
  FROM data
  WHERE metric_value IS NOT NULL
)
SELECT metric_timestamp, metric_name, metric_value, metric_score,
  coalesce(metric_alert, 0) AS metric_alert, coalesce(metric_change, 0) AS metric_change,
  thumbsup, thumbsdown, alert_driver_us
FROM ranked
WHERE recency_rank <= {{ alert_max_n }}
ORDER BY metric_name, metric_timestamp
