{#- plot.sql: the data behind a metric's plot: recent values with score, alert (anomaly or
    threshold) and change marks, alert_max_n observations per metric.
    With preprocess_params.freq set, an observation is its bin, as the models see it.
    Variables: table_key, metric_batch, alert_max_n, bin_timestamp_sql, bin_value_sql,
    bin_empty_value_sql.
    Output: metric_timestamp, metric_name, metric_value, metric_score, metric_alert,
    metric_change, alert_driver_us (when an alert's metadata names the observation that
    drove it, its time: the mark goes there), oldest first per metric. -#}
WITH points AS (
  SELECT metric_timestamp, metric_name,
    avg(CASE WHEN metric_type = 'metric' THEN metric_value END) AS metric_value,
    avg(CASE WHEN metric_type = 'score' THEN metric_value END) AS metric_score,
    max(CASE WHEN metric_type IN ('alert', 'tholdalert') THEN metric_value END) AS metric_alert,
    max(CASE WHEN metric_type = 'alert' THEN
      TRY_CAST(regexp_extract(metadata, '"driver":\{[^}]*"timestamp_us":(-?[0-9]+)', 1) AS BIGINT) END) AS alert_driver_us,
    max(CASE WHEN metric_type = 'change' THEN metric_value END) AS metric_change
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}'
    AND metric_type IN ('metric', 'score', 'alert', 'tholdalert', 'change')
  GROUP BY metric_timestamp, metric_name
),
data AS (
  SELECT {{ bin_timestamp_sql }} AS metric_timestamp, metric_name,
    coalesce({{ bin_value_sql }} FILTER (WHERE metric_value IS NOT NULL), {{ bin_empty_value_sql }}) AS metric_value,
    avg(metric_score) AS metric_score, max(metric_alert) AS metric_alert,
    max(alert_driver_us) AS alert_driver_us, max(metric_change) AS metric_change
  FROM points
  GROUP BY 1, metric_name
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY metric_name ORDER BY metric_timestamp DESC) AS recency_rank
  FROM data
  WHERE metric_value IS NOT NULL
)
SELECT metric_timestamp, metric_name, metric_value, metric_score,
  coalesce(metric_alert, 0) AS metric_alert, coalesce(metric_change, 0) AS metric_change,
  alert_driver_us
FROM ranked
WHERE recency_rank <= {{ alert_max_n }}
ORDER BY metric_name, metric_timestamp
