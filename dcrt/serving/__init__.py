"""Serving dcrt behind NVIDIA Triton Inference Server (`dcrt serve`, `dcrt client`) and a Gradio page (`dcrt ui`).

repository.py   the model repository: the tensor table, config.pbtxt, 1/model.py (torch-free)
service.py      one request -> a video or a one-line error, in any Python process (what model.py runs)
triton_model.py Triton's Python-backend class over VideoService (imported inside Triton's stub only)
server.py       the `tritonserver` of the nvidia-pytriton wheel (or on PATH): environment, start, stop
client.py       a request through tritonclient's HTTP client
"""
