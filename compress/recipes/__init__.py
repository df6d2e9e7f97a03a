"""Compression recipes: chain pruning, quantization (uniform or trained weight sharing), fine-tuning,
Monarch and entropy coding into one artifact (Han, Mao & Dally, Deep Compression, ICLR 2016).

    engine.py    Recipe, validate_recipe(s) (one-line errors), train_baseline, run_recipe -> RecipeResult
    base.py      Step interface, StepSettings / StepFit, RecipeContext, RecipeError
    registry.py  STEPS: name -> Step class (one line per step)
    steps/       prune, quantize, finetune, monarch, encode
    tensors.py   which tensors are compressed, model <-> artifact
    artifact.py  the file: relative indices + codes + codebooks + floats, entropy-coded (lzma / zstd)
    runtime.py   the ``recipe-decoded`` runtime
"""
