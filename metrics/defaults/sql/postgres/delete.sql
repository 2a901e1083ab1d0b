{#- postgres/delete.sql (PostgreSQL's version of ../delete.sql): retention; removes a batch's rows older than delete_after_n_days.
    Variables: table_key, metric_batch, delete_after_n_days. -#}
DELETE FROM {{ table_key }}
WHERE metric_batch = '{{ metric_batch }}'
  AND metric_timestamp < (now() AT TIME ZONE 'UTC') - INTERVAL '{{ delete_after_n_days }} days'
