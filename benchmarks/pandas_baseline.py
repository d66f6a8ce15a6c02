"""The template's own yardstick for `prepare`: the same checks, split and Parquet output in
pandas. Projects made from the template do not carry it; `make bench` uses it where present."""

PANDAS_PIPELINE = """
import numpy as np, pandas as pd
from mlops_template.schema import load_schema
schema = load_schema(Path(sys.argv[1]))
source, out = sys.argv[2], Path(sys.argv[3])
frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=list(schema.null_values))
problems = 0
typed = {}
for spec in (schema.target, *schema.features):
    raw = frame[spec.name]
    if spec.type == "category":
        bad = raw.notna() & ~raw.isin(list(spec.categories))
        typed[spec.name] = raw
    else:
        number = pd.to_numeric(raw, errors="coerce")
        bad = (raw.notna() & number.isna()) | np.isinf(number)
        if spec.min is not None:
            bad |= number < spec.min
        if spec.max is not None:
            bad |= number > spec.max
        typed[spec.name] = number
    if not spec.nullable and spec.name != schema.target.name:
        bad |= raw.isna()
    problems += int(bad.sum())
assert problems == 0, problems
data = pd.DataFrame(typed)
data = data[data[schema.target.name].notna()]
rng = np.random.default_rng(schema.split.seed)
data["_r"] = rng.random(len(data))
data["_rank"] = data.groupby(schema.target.name)["_r"].rank(method="first")
data["_n"] = data.groupby(schema.target.name)["_r"].transform("size")
is_test = data["_rank"] <= (data["_n"] * schema.split.test_fraction).round()
data[~is_test].drop(columns=["_r", "_rank", "_n"]).to_parquet(out / "train.parquet")
data[is_test].drop(columns=["_r", "_rank", "_n"]).to_parquet(out / "test.parquet")
"""
