{#- alerts.sql: recent observations with their anomaly score, the score smoothed over the
    last alert_smooth_n observations in time order (each row and the ones BEFORE it, never
    later ones), and whether an alert fires: the smoothed score reaches alert_threshold and no
    alert fired in the alert_snooze_n observations before this one.
    With preprocess_params.freq set, an observation is its bin (the models' view: the scores
    and alerts are stamped on the bins' labels), aggregated as freq_agg says over one value per
    timestamp; for count and sum, a scored bin without observations is there with its 0.
    Variables: table_key, metric_batch, alert_smooth_n, alert_threshold, alert_snooze_n,
    alert_max_n, alert_metric_timestamp_max_days_ago, alert_exclude_metrics,
    bin_timestamp_sql, bin_value_sql, bin_empty_value_sql (sandstack's: the bin of a row, its
    value, an empty bin's value).
    Output: metric_timestamp, metric_name, metric_value, metric_score, metric_score_smooth,
    metric_alert (0/1), recency_rank (1 = newest). -#}
WITH points AS (
  SELECT metric_timestamp, metric_name, avg(metric_value) AS metric_value
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}'
    AND metric_type = 'metric'
    AND metric_timestamp >= make_timestamp(epoch_us(now())) - INTERVAL '{{ alert_metric_timestamp_max_days_ago }} days'
    {%- if alert_exclude_metrics %}
    AND metric_name NOT IN ({% for m in alert_exclude_metrics %}'{{ m }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- endif %}
  GROUP BY metric_timestamp, metric_name
),
binned AS (
  SELECT {{ bin_timestamp_sql }} AS metric_timestamp, metric_name, {{ bin_value_sql }} AS metric_value
  FROM points
  GROUP BY 1, metric_name
),
observed AS (
  SELECT * FROM binned
  {%- if bin_empty_value_sql != "NULL" %}
  UNION ALL
  SELECT s.metric_timestamp, s.metric_name, {{ bin_empty_value_sql }} AS metric_value
  FROM (
    SELECT DISTINCT metric_timestamp, metric_name
    FROM {{ table_key }}
    WHERE metric_batch = '{{ metric_batch }}'
      AND metric_type = 'score'
      AND metric_timestamp >= make_timestamp(epoch_us(now())) - INTERVAL '{{ alert_metric_timestamp_max_days_ago }} days'
      AND metric_name IN (SELECT metric_name FROM points)
  ) s
  ANTI JOIN binned b USING (metric_timestamp, metric_name)
  {%- endif %}
),
scores AS (
  SELECT metric_timestamp, metric_name, avg(metric_value) AS metric_score
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}' AND metric_type = 'score'
  GROUP BY metric_timestamp, metric_name
),
stored_alerts AS (
  SELECT metric_timestamp, metric_name, max(metric_value) AS metric_alert_stored
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}' AND metric_type = 'alert'
  GROUP BY metric_timestamp, metric_name
),
joined AS (
  SELECT m.metric_timestamp, m.metric_name, m.metric_value, s.metric_score,
         coalesce(a.metric_alert_stored, 0) AS metric_alert_stored
  FROM observed m
  LEFT JOIN scores s USING (metric_timestamp, metric_name)
  LEFT JOIN stored_alerts a USING (metric_timestamp, metric_name)
),
smoothed AS (
  SELECT *,
    avg(metric_score) OVER (
      PARTITION BY metric_name ORDER BY metric_timestamp
      ROWS BETWEEN {{ [alert_smooth_n - 1, 0] | max }} PRECEDING AND CURRENT ROW
    ) AS metric_score_smooth,
    row_number() OVER (PARTITION BY metric_name ORDER BY metric_timestamp DESC) AS recency_rank
  FROM joined
),
flagged AS (
  SELECT *,
    CASE WHEN metric_score_smooth >= {{ alert_threshold }} THEN 1 ELSE 0 END AS metric_alert_raw
  FROM smoothed
),
snoozed AS (
  SELECT *,
    {%- if alert_snooze_n > 0 %}
    coalesce(max(greatest(metric_alert_raw, metric_alert_stored)) OVER (
      PARTITION BY metric_name ORDER BY metric_timestamp
      ROWS BETWEEN {{ alert_snooze_n }} PRECEDING AND 1 PRECEDING
    ), 0) AS alerted_before
    {%- else %}
    0 AS alerted_before
    {%- endif %}
  FROM flagged
)
SELECT metric_timestamp, metric_name, metric_value, metric_score, metric_score_smooth,
  CASE WHEN metric_alert_raw = 1 AND alerted_before = 0 THEN 1 ELSE 0 END AS metric_alert,
  recency_rank
FROM snoozed
WHERE recency_rank <= {{ alert_max_n }}
ORDER BY metric_name, metric_timestamp
