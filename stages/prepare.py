"""prepare: load the dataset (falling back loudly if allowed), split it, save the splits."""
from __future__ import annotations

import warnings

from compress.data import DataUnavailable, prepare, save_prepared
from stages.common import die, load_params_or_exit, mlflow_run, stage_args, write_json


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prepared = prepare(P.data, P.seed)
    except (DataUnavailable, ValueError) as e:
        die(str(e))
    for w in caught:
        print(f"WARNING: {w.message}", flush=True)
    save_prepared(prepared, P.data.out)
    meta = prepared.meta
    write_json("metrics/prepare.json", {"dataset": meta["dataset"], "dataset_substituted": meta["substituted"], **{f"n_{k}": v for k, v in meta["sizes"].items()}})
    with mlflow_run(P, "prepare", ["data"], meta) as mlf:
        mlf.log_metrics({f"n_{k}": v for k, v in meta["sizes"].items()})
        mlf.log_dict(meta, "data_meta.json")
    print(f"prepare: {meta['dataset']} (requested {meta['requested']}), splits {meta['sizes']} -> {P.data.out}")


if __name__ == "__main__":
    main()
