"""report: the last stage — Pareto fronts over all variants + search trials, figures, reports/report.md.

Reads reports/variants.csv (evaluate), metrics/*.json, search/trials.csv (search) and the PNG
figures other stages wrote under plots/ and reports/; writes reports/pareto.csv,
reports/figures/*.png and reports/report.md, and logs them to MLflow.
"""
from __future__ import annotations

from compress.data import load_meta
from dashboards.report import generate
from stages.common import die, git_commit, load_params_or_exit, mlflow_run, stage_args


def main() -> None:
    args = stage_args(__doc__)
    P = load_params_or_exit(args.params)
    try:
        meta = load_meta(P.data.out)
    except FileNotFoundError as e:
        die(str(e))
    with mlflow_run(P, "report", ["report"], meta) as mlf:
        try:
            out = generate(P.report, commit=git_commit())
        except FileNotFoundError as e:
            die(str(e))
        mlf.log_artifact(str(out))
        mlf.log_artifact(P.report.pareto)
        mlf.log_artifacts(P.report.figures, artifact_path="figures")
    print(f"report: {out} ({meta['dataset']}{', SUBSTITUTED' if meta.get('substituted') else ''}); fronts in {P.report.pareto}")


if __name__ == "__main__":
    main()
