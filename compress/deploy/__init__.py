"""Deployment: every variant's artifact on the fastest real kernels its number format allows.

Artifacts stay compact on disk (bit-packed codes, compact sparse safetensors, fp16/bf16/fp8
safetensors, 1-bit BinaryConnect, Monarch factors).  At load, :mod:`compress.deploy.graphs`
builds the graphs that run them fast (an in-memory ONNX ``ModelProto``: an int8 QDQ graph whose
weight initializers are the stored integer codes, or an fp32 graph; an eager module; a PT2E
program), and :mod:`compress.deploy.engines` hands each graph to every engine that accepts it
(PyTorch eager, ONNX Runtime, OpenVINO, PT2E + AOTInductor, torch.sparse CSR).
This package file imports nothing: import the submodule you use (the evaluate stage's DVC
dependencies are generated from those imports).
:mod:`compress.deploy.measure` measures accuracy and latency per engine for the evaluate stage.

    from compress.deploy.measure import evaluate_deployed, measure_variant
    res = measure_variant(folder, manifest, test_x, test_y, runtimes=["onnxruntime", "openvino"])
    out = evaluate_deployed(discover("variants"), test_x, test_y, runtimes=None)   # every variant, raw results
(the evaluate stage uses :func:`compress.evaluate.evaluate_all`: the same measurement with one-line
error rows for artifacts that cannot be measured, and the variants-table columns)
"""
