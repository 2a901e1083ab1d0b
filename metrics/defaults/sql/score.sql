{#- score.sql: the recent observations to score (the job skips timestamps already scored).
    Variables: table_key, metric_batch, score_max_n, score_exclude_metrics.
    Output: metric_timestamp, metric_name, metric_value, oldest first per metric. -#}
WITH data AS (
  SELECT metric_timestamp, metric_name, avg(metric_value) AS metric_value
  FROM {{ table_key }}
  WHERE metric_batch = '{{ metric_batch }}'
    AND metric_type = 'metric'
    AND metric_value IS NOT NULL
    {%- if score_exclude_metrics %}
    AND metric_name NOT IN ({% for m in score_exclude_metrics %}'{{ m }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- endif %}
  GROUP BY metric_timestamp, metric_name
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY metric_name ORDER BY metric_timestamp DESC) AS recency_rank
  FROM data
)
SELECT metric_timestamp, metric_name, metric_value
FROM ranked
WHERE recency_rank <= {{ score_max_n }}
ORDER BY metric_name, metric_timestamp
