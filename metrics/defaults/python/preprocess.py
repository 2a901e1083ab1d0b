import pandas as pd


def preprocess(df, diff_n=1, smooth_n=3, lags_n=5, shuffle=False, dropna=True, freq=None, freq_agg="mean") -> pd.DataFrame:
    """Turn one metric's values into model features.

    Optionally resample to `freq` (aggregating with `freq_agg`; bins counted from the Unix
    epoch, so a bin keeps its label whatever window is read), take the `diff_n`-th
    difference, smooth with a rolling mean over `smooth_n` observations, and add `lags_n`
    lagged copies as extra columns. sandstack runs a native equivalent of this function; a
    batch that sets its own `preprocess_fn` has it run in the sandbox instead.
    """
    X = df.sort_values(by=["metric_timestamp"]).reset_index(drop=True)
    X = X.set_index("metric_timestamp")
    X = X[["metric_value"]]
    if freq:
        X = X.resample(freq, origin="epoch").agg(freq_agg)
    if diff_n > 0:
        X["metric_value"] = X["metric_value"].diff(periods=diff_n)
    if smooth_n > 0:
        X["metric_value"] = X["metric_value"].rolling(window=smooth_n).mean()
    if lags_n > 0:
        for lag in range(1, lags_n + 1):
            X[f"lag_{lag}"] = X["metric_value"].shift(lag)
    if shuffle:
        X = X.sample(frac=1)
    if dropna:
        X = X.dropna()
    return X
