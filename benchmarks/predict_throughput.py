"""Images per second of `rlar predict`'s whole pipeline against the bare network forward, and ONNX Runtime beside it.

Whole pipeline = what `rlar predict` does per image: decode the file, scan-area crop, resize/pad, forward, mask
back to the input's resolution, measurements, the 13 radiomics features on the predicted mask, overlay, and the
mask/overlay/JSON/HTML files. The fast path (`rlar predict --no-report`) = the same without the radiomics
evidence, the overlay and the HTML page (mask PNG, JSON with category, probabilities and measurements). Bare
forward = the network alone on the already prepared input (batch of 1, as the pipeline runs it), in PyTorch and in
ONNX Runtime (the exported model). One image at a time, after a warm-up; every rate is measured in the same run,
and the ratios are images/s of a pipeline over images/s of the bare PyTorch forward.

    python benchmarks/predict_throughput.py --model /tmp/ddti_fold0 --images ../shared/data/ddti --n 50 --threads 2
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder or checkpoint")
    parser.add_argument("--images", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ddti"),
                        help="folder of images (default: the DDTI development copy)")
    parser.add_argument("--n", type=int, default=50, help="number of images")
    parser.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime intra-op threads")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime measurement")
    args = parser.parse_args(argv)

    from rlar.inference.batch import expand_inputs, write_result
    from rlar.inference.export import export_model
    from rlar.inference.pipeline import prepare_frames
    from rlar.inference.predictor import Predictor

    torch.set_num_threads(args.threads)
    predictor = Predictor.from_run(args.model)
    files = [f for f, _ in expand_inputs([args.images]).files][: args.n]
    if not files:
        print(f"no images under {args.images}", file=sys.stderr)
        return 2
    model = predictor.members[0].model.eval()
    print(f"model: {predictor.members[0].path} ({predictor.config.model.arch}/{predictor.config.model.backbone}, "
          f"input {predictor.network_shape[0]}x{predictor.network_shape[1]}, crop {predictor.crop})")
    print(f"machine: {platform.machine()}, python {platform.python_version()}, torch {torch.__version__}, "
          f"threads {args.threads}; {len(files)} images from {args.images}")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_result(predictor.predict_one(files[0]), predictor, out, "warmup", {})
        start = time.perf_counter()
        for i, file in enumerate(files):
            write_result(predictor.predict_one(file), predictor, out, f"img{i}", {})
        pipeline = len(files) / (time.perf_counter() - start)
        start = time.perf_counter()
        for i, file in enumerate(files):
            write_result(predictor.predict_one(file, evidence=False), predictor, out, f"fast{i}", {}, report=False)
        fast = len(files) / (time.perf_counter() - start)

        inputs = [torch.from_numpy(prepare_frames(predictor.read(f).frames[:1], predictor.preprocessing,
                                                  predictor.crop)[0][0])[None] for f in files]
        with torch.no_grad():
            model(inputs[0])
            start = time.perf_counter()
            for x in inputs:
                model(x)
            forward = len(files) / (time.perf_counter() - start)

        onnx_rate = None
        if not args.no_onnx:
            import onnxruntime as ort

            path = export_model(predictor.members[0], out / "model.onnx", "onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            arrays = [x.numpy().astype(np.float32) for x in inputs]
            session.run(None, {"image": arrays[0]})
            start = time.perf_counter()
            for a in arrays:
                session.run(None, {"image": a})
            onnx_rate = len(files) / (time.perf_counter() - start)

    print(f"{'stage':<46}{'images/s':>10}{'x pipeline':>12}")
    print(f"{'whole pipeline (rlar predict, files written)':<46}{pipeline:>10.2f}{1.0:>12.2f}")
    print(f"{'fast path (rlar predict --no-report)':<46}{fast:>10.2f}{fast / pipeline:>12.2f}")
    print(f"{'bare network forward, PyTorch':<46}{forward:>10.2f}{forward / pipeline:>12.2f}")
    if onnx_rate is not None:
        print(f"{'bare network forward, ONNX Runtime':<46}{onnx_rate:>10.2f}{onnx_rate / pipeline:>12.2f}")
    print(f"images/s ratio to the bare PyTorch forward: whole pipeline {pipeline / forward:.2f}, "
          f"fast path {fast / forward:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
