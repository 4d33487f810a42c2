#!/usr/bin/env python3
"""The baseline a user would otherwise run: KServe's own Python model server (PyPI `kserve`) serving a
torchvision model with torch on the CPU over the v2 protocol, no batching of its own (KServe's
batcher is a separate sidecar). Random weights, like the runtime's benchmark model.

  python3 kserve_server.py --model resnet18 --port 8081 --threads 2
"""
import argparse
import uuid

import kserve
import numpy as np
import torch
import torchvision
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class TorchvisionModel(Model):
    def __init__(self, name: str, arch: str):
        super().__init__(name)
        self.arch = arch
        self.net = None
        self.load()

    def load(self):
        self.net = getattr(torchvision.models, self.arch)(weights=None).eval()
        self.ready = True
        return self.ready

    # Metadata perf_analyzer needs (KServe reports no inputs by default). Not on the data path.
    def get_input_types(self):
        return [{"name": "input__0", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]

    def get_output_types(self):
        return [{"name": "output__0", "datatype": "FP32", "shape": [-1, 1000]}]

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = torch.from_numpy(np.ascontiguousarray(payload.inputs[0].as_numpy(), dtype=np.float32))
        with torch.inference_mode():
            y = self.net(x).numpy()
        binary = payload.use_binary_outputs
        out = InferOutput(name="output__0", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=binary)
        # KServe requires a response id; perf_analyzer sends none in synchronous mode. Honouring the
        # requested outputs and their binary flag is KServe's own binary-extension support; without it
        # the reply lacks the `binary_data_size` perf_analyzer asked for.
        return InferResponse(model_name=self.name, infer_outputs=[out], response_id=payload.id or str(uuid.uuid4()),
                             model_version="1", use_binary_outputs=binary, requested_outputs=payload.request_outputs)


def add_config_endpoint(name: str):
    """perf_analyzer asks for Triton's model-config extension, which KServe lacks. This adds the one
    metadata route it needs (max_batch_size 0: no server-side batching, as KServe has none); the
    inference path stays KServe's own."""
    from kserve.model_server import app

    @app.get(f"/v2/models/{name}/config")
    async def config():
        return {"name": name, "max_batch_size": 0,
                "input": [{"name": "input__0", "data_type": "TYPE_FP32", "dims": [1, 3, 224, 224]}],
                "output": [{"name": "output__0", "data_type": "TYPE_FP32", "dims": [1, 1000]}]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--port", type=int, default=8081)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    add_config_endpoint(a.model)
    ModelServer(http_port=a.port, grpc_port=a.port + 1000, workers=1, enable_docs_url=False).start([TorchvisionModel(a.model, a.model)])
