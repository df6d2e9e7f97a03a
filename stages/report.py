"""report: the last stage — Pareto fronts over all variants + search trials, figures, reports/report.md.

Reads reports/variants.csv (evaluate), metrics/*.json (every stage's: speed-ups per engine in latency.json, paper
claims, wall_seconds), metrics/recipes/*.json and plots/recipes/*/trail.csv (recipes), search/trials.csv (search) and
the PNG figures other stages wrote under plots/ and reports/; writes reports/pareto.csv, reports/figures/*.png
(recipe_trails.png included) and reports/report.md, and logs them to MLflow.
"""
from __future__ import annotations

from dashboards.report import generate
from stages.common import Stage, git_commit
from stages.pipeline import FIGURES, PARETO_CSV


def main() -> None:
    st = Stage("report", __doc__)
    with st.run() as mlf:
        out = st.load(generate, st.P.report, commit=git_commit())
        mlf.log_artifact(str(out))
        mlf.log_artifact(PARETO_CSV)
        mlf.log_artifacts(FIGURES, artifact_path="figures")
    print(f"report: {out} ({st.meta['dataset']}{', SUBSTITUTED' if st.meta.get('substituted') else ''}); fronts in {PARETO_CSV}")


if __name__ == "__main__":
    main()
