"""prepare: load the dataset (falling back loudly if allowed), split it, save the splits."""
from __future__ import annotations

import warnings

from compress.data import DataUnavailable, prepare, save_prepared
from stages.common import Stage
from stages.pipeline import PREPARED


def main() -> None:
    st = Stage("prepare", __doc__, needs_data=False)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prepared = prepare(st.P.data, st.P.seed)
    except (DataUnavailable, ValueError) as e:
        st.die(str(e))
    for w in caught:
        print(f"WARNING: {w.message}", flush=True)
    save_prepared(prepared, PREPARED)
    st.meta = meta = prepared.meta
    st.write_metrics({f"n_{k}": v for k, v in meta["sizes"].items()})
    with st.run() as mlf:
        mlf.log_metrics({f"n_{k}": v for k, v in meta["sizes"].items()})
        mlf.log_dict(meta, "data_meta.json")
    print(f"prepare: {meta['dataset']} (requested {meta['requested']}), splits {meta['sizes']} -> {PREPARED}")


if __name__ == "__main__":
    main()
