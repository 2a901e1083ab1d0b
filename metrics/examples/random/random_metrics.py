import numpy as np
import pandas as pd


def ingest(n_metrics=3) -> pd.DataFrame:
    """A few random walks' next steps, with the occasional spike."""
    rng = np.random.default_rng()
    values = rng.normal(loc=10.0, scale=1.0, size=n_metrics)
    if rng.random() < 0.05:
        values[rng.integers(n_metrics)] *= 5
    df = pd.DataFrame(
        {
            "metric_name": [f"random_{i}" for i in range(n_metrics)],
            "metric_value": values,
        }
    )
    df["metric_timestamp"] = pd.Timestamp.now(tz="UTC")
    return df
