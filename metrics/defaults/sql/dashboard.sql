{#- dashboard.sql: every metric's series for the dashboard's charts: values with score,
    alert, change and feedback marks, for the window the page shows: the last_n newest
    observations per metric, since cutoff_time when it is given (Anomstack's two run-time
    variables; for a time window the page passes both, last_n as a cap). With
    preprocess_params.freq set, an observation is its bin, as the models see it (one value
    per timestamp, then freq_agg; an empty bin of a count or sum is 0), so the scores and
    alerts stamped on bins line up.
    Variables: table_key, metric_batch, last_n, cutoff_time (UTC, 'YYYY-MM-DD HH:MM:SS'),
    bin_timestamp_sql, bin_value_sql, bin_empty_value_sql.
    Output: metric_timestamp, metric_name, metric_value, metric_score, metric_alert,
    metric_change, thumbsup, thumbsdown, alert_driver_us (when an alert's metadata names the
    observation that drove it, its time: the mark goes there), oldest first per metric. -#}
WITH points AS (
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
    {%- if cutoff_time is defined %}
    AND metric_timestamp >= TIMESTAMP '{{ cutoff_time }}'
    {%- endif %}
  GROUP BY metric_timestamp, metric_name
),
data AS (
  SELECT {{ bin_timestamp_sql }} AS metric_timestamp, metric_name,
    coalesce({{ bin_value_sql }} FILTER (WHERE metric_value IS NOT NULL), {{ bin_empty_value_sql }}) AS metric_value,
    avg(metric_score) AS metric_score, max(metric_alert) AS metric_alert,
    max(alert_driver_us) AS alert_driver_us, max(metric_change) AS metric_change,
    CAST(sum(thumbsup) AS BIGINT) AS thumbsup, CAST(sum(thumbsdown) AS BIGINT) AS thumbsdown
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
  thumbsup, thumbsdown, alert_driver_us
FROM ranked
WHERE recency_rank <= {{ last_n | default(500) }}
ORDER BY metric_name, metric_timestamp
