"""The runtimes of static-shape graphs (ONNX Runtime, TensorRT, AOTInductor), each only running named graphs
(dcrt.backends.static.GraphRuntime), and `--backend auto` (select). A model family's backend interface sits on top:
its PyTorch backend, or its adapter over one of these runtimes (dcrt.families.<family>.static)."""
