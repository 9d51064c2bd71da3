"""Serving dcrt behind NVIDIA Triton Inference Server (`dcrt serve`, `dcrt client`), a Gradio page (`dcrt ui`) and an
asynchronous jobs API (`dcrt api`).

repository.py   the model repository: the tensor table, config.pbtxt, 1/model.py (torch-free)
service.py      one request -> a video or a one-line error, in any Python process (what model.py runs)
triton_model.py Triton's Python-backend class over VideoService (imported inside Triton's stub only)
server.py       the `tritonserver` of the nvidia-pytriton wheel (or on PATH): environment, start, stop
client.py       a request through tritonclient's HTTP client
jobs/           `dcrt api`: jobs submitted, watched, cancelled and fetched by id over HTTP (dcrt.serving.jobs)
"""
