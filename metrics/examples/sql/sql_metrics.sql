-- Three metrics: a sine wave over the hour, a noisy level, and a count.
SELECT
  make_timestamp(epoch_us(now())) AS metric_timestamp,
  metric_name,
  metric_value
FROM (
  VALUES
    ('sql_sine', 10 + 5 * sin(2 * pi() * minute(make_timestamp(epoch_us(now()))) / 60.0)),
    ('sql_noise', 100 + 10 * random()),
    ('sql_count', floor(random() * 50)::DOUBLE)
) AS t(metric_name, metric_value)
