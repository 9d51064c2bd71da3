"""The build side and the files it writes: the graphs' IO specs (graphs, graph_module), ONNX export (export), the
TensorRT and AOTInductor builders (tensorrt_build, aoti_build) and the on-disk formats the runtime reads back
(manifest, engine_bundle, aoti_bundle). The runtime imports only the formats, never a builder
(tests/test_layout.py)."""
