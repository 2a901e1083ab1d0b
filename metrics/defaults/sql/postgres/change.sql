{#- postgres/change.sql (PostgreSQL's version of ../change.sql): observations for MAD-based change detection: each value smoothed over the
    last change_smooth_n observations in time order (each row and the ones BEFORE it), and
    whether a change was already flagged in the change_snooze_n observations before it.
    Variables: table_key, metric_batch, change_smooth_n, change_snooze_n,
    change_metric_timestamp_max_days_ago, change_include_metrics, change_exclude_metrics.
    Output: metric_timestamp, metric_name, metric_value, metric_value_smooth,
    changed_before (0/1), recency_rank (1 = newest). -#}
WITH observed AS (
  SELECT metric_timestamp, metric_name, avg(metric_value) AS metric_value
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}'
    AND metric_type = 'metric'
    AND metric_value IS NOT NULL
    AND metric_timestamp >= (now() AT TIME ZONE 'UTC') - INTERVAL '{{ change_metric_timestamp_max_days_ago }} days'
    {%- if change_include_metrics %}
    AND metric_name IN ({% for m in change_include_metrics %}'{{ m }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- endif %}
    {%- if change_exclude_metrics %}
    AND metric_name NOT IN ({% for m in change_exclude_metrics %}'{{ m }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- endif %}
  GROUP BY metric_timestamp, metric_name
),
stored_changes AS (
  SELECT metric_timestamp, metric_name, max(metric_value) AS changed
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}' AND metric_type = 'change'
  GROUP BY metric_timestamp, metric_name
),
joined AS (
  SELECT m.*, coalesce(c.changed, 0) AS changed
  FROM observed m LEFT JOIN stored_changes c USING (metric_timestamp, metric_name)
)
SELECT metric_timestamp, metric_name, metric_value,
  avg(metric_value) OVER (
    PARTITION BY metric_name ORDER BY metric_timestamp
    ROWS BETWEEN {{ [change_smooth_n - 1, 0] | max }} PRECEDING AND CURRENT ROW
  ) AS metric_value_smooth,
  {%- if change_snooze_n > 0 %}
  coalesce(max(changed) OVER (
    PARTITION BY metric_name ORDER BY metric_timestamp
    ROWS BETWEEN {{ change_snooze_n }} PRECEDING AND 1 PRECEDING
  ), 0) AS changed_before,
  {%- else %}
  0 AS changed_before,
  {%- endif %}
  row_number() OVER (PARTITION BY metric_name ORDER BY metric_timestamp DESC) AS recency_rank
FROM joined
ORDER BY metric_name, metric_timestamp
